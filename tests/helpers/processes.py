"""The production shape for tests: `cinderblock serve <service>` processes wired only through
CINDERBLOCK_DATABASE_URL and CINDERBLOCK_NATS_URL, on a fresh database and stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.js.errors

from tests.helpers.servers import Servers, fresh_database


@dataclass
class Deployment:
    api_urls: list[str]
    data_dir: Path
    database_url: str


@contextlib.asynccontextmanager
async def serving(
    servers: Servers, data_dir: Path, services: tuple[str, ...], *, port: int = 0
) -> AsyncIterator[Deployment]:
    """One process per entry of ``services`` (``api`` may appear several times; an entry may
    carry arguments: ``"api --workers 2"``); every process must exit 0 on SIGTERM. The api
    processes bind ``port``, by default each a port of its own."""
    tag = uuid.uuid4().hex[:8]
    async with fresh_database(servers) as url:
        env = {
            **os.environ,
            "CINDERBLOCK_DATABASE_URL": url,
            "CINDERBLOCK_NATS_URL": servers.nats_url,
            "CINDERBLOCK_STREAM": f"P_{tag}",
            "CINDERBLOCK_SUBJECT_PREFIX": f"p{tag}.",
            "CINDERBLOCK_DATA_DIR": str(data_dir),
            "CINDERBLOCK_PORT": str(port),
            "CINDERBLOCK_LOG_LEVEL": "INFO",
        }
        exe = str(Path(sys.executable).parent / "cinderblock")
        procs = [
            (
                name,
                await asyncio.create_subprocess_exec(
                    exe,
                    "serve",
                    *name.split(),
                    env=env,
                    stderr=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.DEVNULL,
                ),
            )
            for name in services
        ]
        try:
            urls = [await _api_url(proc) for name, proc in procs if name.split()[0] == "api"]
            yield Deployment(urls, data_dir, url)
        finally:
            for _, proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            codes = [await asyncio.wait_for(p.wait(), 20) for _, p in procs]
            nc = await nats.connect(servers.nats_url)
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(f"P_{tag}")
            await nc.close()
    assert codes == [0] * len(procs)


async def _api_url(proc: asyncio.subprocess.Process) -> str:
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while line := await proc.stderr.readline():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("message") == "api listening":
                    asyncio.get_running_loop().create_task(_drain(proc))
                    return str(entry["url"])
    raise AssertionError("api never listened")


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while await proc.stderr.readline():
        pass
