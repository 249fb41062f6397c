"""`cinderblock dev` as a user runs it: a real process with embedded PostgreSQL and NATS.
Ctrl-C stops everything; a restart keeps the volumes; a SIGKILLed run blocks nothing. Both
shapes: everything in one process (``--workers 1``) and, the default, api workers sharing
the port with each consumer in its own process (``--workers 2`` here, whatever the CPUs)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp

from tests.helpers.dev import DevProcess, dev_dir, leftover_servers, until_available

__all__ = ["dev_dir"]  # the fixture, used below


async def test_dev_runs_stops_restarts_and_survives_sigkill(dev_dir: Path) -> None:
    dev = DevProcess(dev_dir, "--workers", "1")
    await dev.start()
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{dev.url}/v3/{dev.project}/volumes",
            headers=dev.headers(),
            json={"volume": {"size": 1, "name": "keep-me"}},
        ) as resp:
            assert resp.status == 202
            vid = (await resp.json())["volume"]["id"]
        await until_available(session, dev, vid)
        assert await dev.stop(signal.SIGINT) == 0
        assert await asyncio.to_thread(leftover_servers, dev_dir) == []

        again = DevProcess(dev_dir, "--workers", "1")
        await again.start()
        assert again.project == dev.project  # same identity for the same data dir
        volume = await until_available(session, again, vid)
        assert volume["name"] == "keep-me"
        await again.stop(signal.SIGKILL)  # no clean-up at all

        third = DevProcess(dev_dir, "--workers", "1")
        await third.start()
        volume = await until_available(session, third, vid)
        assert volume["name"] == "keep-me"
        assert await third.stop(signal.SIGTERM) == 0
    assert await asyncio.to_thread(leftover_servers, dev_dir) == []
    assert json.loads((dev_dir / "dev.json").read_text())["project_id"] == dev.project


def service_processes(pid: int) -> list[int]:
    """The live `cinderblock serve` children of ``pid``."""
    found = []
    for child in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(stat[1]) == pid and stat[0] != "Z" and b" serve " in cmdline:
            found.append(int(child))
    return found


def alive(pids: list[int]) -> list[int]:
    return [p for p in pids if Path(f"/proc/{p}").exists()]


async def test_dev_runs_api_workers_and_each_consumer_in_its_own_process(dev_dir: Path) -> None:
    dev = DevProcess(dev_dir, "--workers", "2")
    await dev.start()
    assert dev.proc is not None
    from cinderblock.cli.system import SERVICES

    services = await asyncio.to_thread(service_processes, dev.proc.pid)
    assert len(services) == len(SERVICES) + 1  # two api workers, one process per consumer
    async with aiohttp.ClientSession() as session:
        base = f"{dev.url}/v3/{dev.project}/volumes"
        async with session.post(base, headers=dev.headers(), json={"volume": {"size": 1}}) as resp:
            assert resp.status == 202
            vid = (await resp.json())["volume"]["id"]
        await until_available(session, dev, vid)
        extend = {"os-extend": {"new_size": 2}}
        async with session.post(f"{base}/{vid}/action", headers=dev.headers(), json=extend) as resp:
            assert resp.status == 202
        async with asyncio.timeout(20):
            while True:
                if (await until_available(session, dev, vid))["size"] == 2:
                    break
                await asyncio.sleep(0.05)
    # A SIGKILLed parent takes its service processes with it (parent-death signal) ...
    await dev.stop(signal.SIGKILL)
    async with asyncio.timeout(10):
        while True:
            if not await asyncio.to_thread(alive, services):
                break
            await asyncio.sleep(0.05)
    # ... and the next run (one api process, still a process per service) starts cleanly on
    # the same data dir, then Ctrl-C stops everything.
    again = DevProcess(dev_dir, "--processes", "--workers", "1")
    await again.start()
    assert again.proc is not None
    assert len(await asyncio.to_thread(service_processes, again.proc.pid)) == len(SERVICES)
    async with aiohttp.ClientSession() as session:
        assert (await until_available(session, again, vid))["size"] == 2
    assert await again.stop(signal.SIGINT) == 0
    assert await asyncio.to_thread(leftover_servers, dev_dir) == []
