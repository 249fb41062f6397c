"""The production shape: `cinderblock serve api|relay|projector|sagas`, each its own process,
wired only through CINDERBLOCK_DATABASE_URL and CINDERBLOCK_NATS_URL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import nats
import nats.js.errors
import pytest_asyncio

from tests.conftest import Servers, fresh_database, listening

GIB = 2**30


@pytest_asyncio.fixture
async def processes(servers: Servers, tmp_path: Path) -> AsyncIterator[tuple[str, Path, str]]:
    tag = uuid.uuid4().hex[:8]
    async with fresh_database(servers) as url:
        env = {
            **os.environ,
            "CINDERBLOCK_DATABASE_URL": url,
            "CINDERBLOCK_NATS_URL": servers.nats_url,
            "CINDERBLOCK_STREAM": f"P_{tag}",
            "CINDERBLOCK_SUBJECT_PREFIX": f"p{tag}.",
            "CINDERBLOCK_DATA_DIR": str(tmp_path),
            "CINDERBLOCK_PORT": "0",
            "CINDERBLOCK_LOG_LEVEL": "INFO",
        }
        exe = str(Path(sys.executable).parent / "cinderblock")
        procs = {
            name: await asyncio.create_subprocess_exec(
                exe,
                "serve",
                name,
                env=env,
                stderr=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
            )
            for name in ("api", "relay", "projector", "sagas")
        }
        try:
            api_url = await _api_url(procs["api"])
            yield api_url, tmp_path, url
        finally:
            for proc in procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            codes = [await asyncio.wait_for(p.wait(), 20) for p in procs.values()]
            nc = await nats.connect(servers.nats_url)
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(f"P_{tag}")
            await nc.close()
    assert codes == [0, 0, 0, 0]


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


async def test_four_processes_serve_create_and_extend(
    processes: tuple[str, Path, str],
) -> None:
    url, data_dir, database_url = processes
    project = uuid.uuid4().hex
    base = f"{url}/v3/{project}/volumes"
    async with (
        asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool,
        listening(pool) as projected,
        aiohttp.ClientSession(headers={"X-Auth-Token": f"u:{project}"}) as http,
    ):
        async with http.post(base, json={"volume": {"size": 1}}) as resp:
            assert resp.status == 202
            vid = (await resp.json())["volume"]["id"]

        async def available() -> dict | None:
            async with http.get(f"{base}/{vid}") as resp:
                volume = (await resp.json())["volume"]
            return volume if volume["status"] == "available" else None

        await projected.until(available)
        async with http.post(f"{base}/{vid}/action", json={"os-extend": {"new_size": 2}}) as resp:
            assert resp.status == 202

        async def grown() -> dict | None:
            volume = await available()
            return volume if volume and volume["size"] == 2 else None

        await projected.until(grown)
    files = list(data_dir.glob(f"volumes/*/*/volume-{vid}.img"))
    assert [f.stat().st_size for f in files] == [2 * GIB]
