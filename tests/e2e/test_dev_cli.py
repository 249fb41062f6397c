"""`cinderblock dev` as a user runs it: a real process with embedded PostgreSQL and NATS.
Ctrl-C stops everything; a restart keeps the volumes; a SIGKILLed run blocks nothing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio

BANNER = re.compile(r"Cinderblock is running: (http://\S+)/v3/([0-9a-f]+)")


class DevProcess:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.project = ""

    async def start(self) -> None:
        exe = Path(sys.executable).parent / "cinderblock"
        self.proc = await asyncio.create_subprocess_exec(
            str(exe),
            "dev",
            "--data-dir",
            str(self.data_dir),
            "--port",
            "0",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "CINDERBLOCK_LOG_LEVEL": "WARNING"},
        )
        assert self.proc.stdout is not None
        seen = []
        async with asyncio.timeout(60):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError("cinderblock dev exited:\n" + "".join(seen))
                seen.append(line)
                if match := BANNER.search(line):
                    self.url, self.project = match.group(1), match.group(2)
                    break
        asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        while await self.proc.stdout.readline():
            pass

    async def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        async with asyncio.timeout(30):
            return await self.proc.wait()

    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": f"admin:{self.project}"}


def leftover_servers(data_dir: Path) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            continue
        if str(data_dir) in cmdline and state != "Z":
            found.append(int(pid))
    return found


@pytest_asyncio.fixture
async def dev_dir() -> AsyncIterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="cbt-dev-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


async def until_available(session: aiohttp.ClientSession, dev: DevProcess, vid: str) -> dict:
    url = f"{dev.url}/v3/{dev.project}/volumes/{vid}"
    async with asyncio.timeout(20):
        while True:
            async with session.get(url, headers=dev.headers()) as resp:
                body = await resp.json()
            if body["volume"]["status"] == "available":
                return body["volume"]
            await asyncio.sleep(0.05)


async def test_dev_runs_stops_restarts_and_survives_sigkill(dev_dir: Path) -> None:
    dev = DevProcess(dev_dir)
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

        again = DevProcess(dev_dir)
        await again.start()
        assert again.project == dev.project  # same identity for the same data dir
        volume = await until_available(session, again, vid)
        assert volume["name"] == "keep-me"
        await again.stop(signal.SIGKILL)  # no clean-up at all

        third = DevProcess(dev_dir)
        await third.start()
        volume = await until_available(session, third, vid)
        assert volume["name"] == "keep-me"
        assert await third.stop(signal.SIGTERM) == 0
    assert await asyncio.to_thread(leftover_servers, dev_dir) == []
    assert json.loads((dev_dir / "dev.json").read_text())["project_id"] == dev.project
