"""Run safety of `cinderblock dev` (issue 12), with real processes and the real embedded
servers: a data dir belongs to one `cinderblock dev` (a second one is refused and touches
nothing; the tools still read the running one's database), and a SIGKILLed run's
PostgreSQL and nats-server stop by themselves within seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from cinderblock.cli.embedded import EmbeddedNats, EmbeddedPostgres
from tests.helpers.dev import DevProcess, cli, dev_dir, leftover_servers, until_available

__all__ = ["cli", "dev_dir"]  # the fixtures, used below


def servers(data_dir: Path) -> tuple[int | None, list[int]]:
    """The live postmaster and nats-servers of ``data_dir``."""
    return EmbeddedPostgres(data_dir).postmaster_pid(), EmbeddedNats(data_dir).server_processes()


def remaining(data_dir: Path) -> list[int]:
    """Every live process of ``data_dir``: postgres (by cwd), nats-server, the watchdog and
    anything else naming it on its command line."""
    found = {*leftover_servers(data_dir), *EmbeddedPostgres(data_dir).server_processes()}
    return sorted(found | set(EmbeddedNats(data_dir).server_processes()))


async def create_volume(session: aiohttp.ClientSession, dev: DevProcess) -> str:
    url = f"{dev.url}/v3/{dev.project}/volumes"
    body = {"volume": {"size": 1, "name": "safe"}}
    async with session.post(url, headers=dev.headers(), json=body) as resp:
        assert resp.status == 202
        vid: str = (await resp.json())["volume"]["id"]
    await until_available(session, dev, vid)
    return vid


async def test_a_second_dev_on_the_same_data_dir_is_refused_and_touches_nothing(
    dev_dir: Path, cli: Any
) -> None:
    first = DevProcess(dev_dir, "--workers", "1")
    await first.start()
    assert first.proc is not None
    before = await asyncio.to_thread(servers, dev_dir)
    assert before[0] is not None
    assert len(before[1]) == 1
    async with aiohttp.ClientSession() as session:
        vid = await create_volume(session, first)

        # Another port, the same data dir: refused at once, exit 2, the owner named.
        second = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "cinderblock"),
            *("dev", "--data-dir", str(dev_dir), "--port", "0", "--workers", "1"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "CINDERBLOCK_LOG_LEVEL": "WARNING"},
        )
        async with asyncio.timeout(30):
            out = (await second.communicate())[0].decode()
        assert second.returncode == 2, out
        assert f"cinderblock: {dev_dir} is in use by cinderblock dev (pid {first.proc.pid})" in out
        assert "Traceback" not in out
        assert "Starting PostgreSQL" not in out

        # Nothing was stopped, restarted or killed: the first run serves on.
        assert await asyncio.to_thread(servers, dev_dir) == before
        assert first.proc.returncode is None
        async with session.get(f"{first.url}/healthcheck") as resp:
            assert resp.status == 200
        volumes = f"{first.url}/v3/{first.project}/volumes"
        async with session.get(volumes, headers=first.headers()) as resp:
            assert resp.status == 200
            assert [v["id"] for v in (await resp.json())["volumes"]] == [vid]

    # The tools read the running dev's database without taking the data dir.
    code, out = await cli("history", vid, "--data-dir", str(dev_dir))
    assert code == 0
    assert "creating → available" in out
    assert await asyncio.to_thread(servers, dev_dir) == before

    assert await first.stop(signal.SIGINT) == 0
    assert await asyncio.to_thread(remaining, dev_dir) == []


async def test_a_killed_dev_takes_its_servers_with_it_and_the_next_one_starts(
    dev_dir: Path,
) -> None:
    dev = DevProcess(dev_dir, "--workers", "1")
    await dev.start()
    postmaster, nats_servers = await asyncio.to_thread(servers, dev_dir)
    assert postmaster is not None
    assert len(nats_servers) == 1
    async with aiohttp.ClientSession() as session:
        vid = await create_volume(session, dev)
    await dev.stop(signal.SIGKILL)  # no clean-up of its own at all

    async with asyncio.timeout(15):
        while True:
            if not await asyncio.to_thread(remaining, dev_dir):
                break
            await asyncio.sleep(0.05)
    assert not (dev_dir / "nats" / "nats-server.url").exists()  # tools find no stale URL

    again = DevProcess(dev_dir, "--workers", "1")
    await again.start()
    assert (await asyncio.to_thread(servers, dev_dir))[0] not in (None, postmaster)
    async with aiohttp.ClientSession() as session:
        assert (await until_available(session, again, vid))["name"] == "safe"
    assert await again.stop(signal.SIGTERM) == 0
    assert await asyncio.to_thread(remaining, dev_dir) == []
