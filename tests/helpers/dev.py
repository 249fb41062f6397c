"""`cinderblock dev` as a user runs it, for the tests that start it as a real process (with
embedded PostgreSQL and NATS), and the CLI run in a thread as a user runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from cinderblock.cli.main import main

BANNER = re.compile(r"Cinderblock is running: (http://\S+)/v3/([0-9a-f]+)")


class DevProcess:
    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = extra
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
            *self.extra,
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
    # A test that failed half-way must not leave its dev run (and servers) behind.
    for pid in await asyncio.to_thread(leftover_servers, root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
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


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """``cinderblock <args>`` in a thread, CINDERBLOCK_DATABASE_URL unset: (code, stdout)."""
    monkeypatch.delenv("CINDERBLOCK_DATABASE_URL", raising=False)
    monkeypatch.setenv("CINDERBLOCK_LOG_LEVEL", "WARNING")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    async def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(args))
        return code, capsys.readouterr().out

    try:
        yield run
    finally:
        root.handlers[:], root.level = handlers, level
