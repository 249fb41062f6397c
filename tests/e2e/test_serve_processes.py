"""The production shape: `cinderblock serve api|relay|projector|sagas`, each its own process,
wired only through CINDERBLOCK_DATABASE_URL and CINDERBLOCK_NATS_URL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest_asyncio

from tests.helpers.processes import serving
from tests.helpers.servers import Servers, listening

GIB = 2**30


@pytest_asyncio.fixture
async def processes(servers: Servers, tmp_path: Path) -> AsyncIterator[tuple[str, Path, str]]:
    async with serving(servers, tmp_path, ("api", "relay", "projector", "sagas")) as deployed:
        yield deployed.api_urls[0], deployed.data_dir, deployed.database_url


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
