"""The whole system in this process, as `cinderblock dev` runs it (api, relay, projector,
sagas), on the session's PostgreSQL and NATS, with a fault-injecting file driver."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats
import nats.js.errors
import pytest_asyncio

from cinderblock.cli.system import run_all
from cinderblock.config.settings import Settings
from cinderblock.drivers.base import PoolConfig
from cinderblock.drivers.faults import FaultInjectingDriver, FaultPlan
from cinderblock.drivers.file import FileDriver
from tests.helpers.client import CinderClient
from tests.helpers.servers import Projected, Servers, fresh_database, listening, make_settings


@dataclass
class System:
    url: str
    settings: Settings
    driver: FaultInjectingDriver
    client: CinderClient
    projected: Projected
    pool: asyncpg.Pool

    def faults(self, spec: str) -> None:
        self.driver.plan = FaultPlan.parse(spec)

    async def until_volume(
        self,
        volume_id: str,
        predicate: Callable[[dict[str, Any] | None], bool],
        client: CinderClient | None = None,
    ) -> dict[str, Any] | None:
        c = client or self.client

        async def check() -> Any:
            volume = await c.volume(volume_id)
            return (volume or {"gone": True}) if predicate(volume) else None

        return await self.projected.until(check)  # type: ignore[no-any-return]

    async def until_status(self, volume_id: str, status: str) -> dict[str, Any]:
        found = await self.until_volume(
            volume_id, lambda v: v is not None and v["status"] == status
        )
        assert found is not None
        return found

    async def available_volume(self, size: int = 1, **fields: Any) -> dict[str, Any]:
        """A new available volume in a project of its own (so quotas never run out); the
        default client is admin, as every noauth caller, and can act on it."""
        owner = self.client.as_(project_id=uuid.uuid4().hex)
        created = await owner.create_volume(size, **fields)
        return await self.until_status(created["id"], "available")


@pytest_asyncio.fixture(scope="session")
async def system(servers: Servers, session_tag: str, data_dir: Path) -> AsyncIterator[System]:
    """Its own database and stream: what it does never mixes with the integration tests."""
    async with fresh_database(servers) as url:
        settings = make_settings(url, servers.nats_url, f"{session_tag}E", data_dir)
        pools = [PoolConfig.parse(p) for p in settings.pools]
        driver = FaultInjectingDriver(FileDriver(data_dir / "volumes", pools), FaultPlan())
        stop = asyncio.Event()
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            run_all(settings, stop=stop, ready=ready.set_result, driver=driver)
        )
        try:
            base = await asyncio.wait_for(asyncio.shield(ready), 30)
            async with (
                asyncpg.create_pool(url, min_size=1, max_size=4) as pool,
                listening(pool) as projected,
                aiohttp.ClientSession() as session,
            ):
                yield System(base, settings, driver, CinderClient(session, base), projected, pool)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await _delete_stream(settings)


async def _delete_stream(settings: Settings) -> None:
    nc = await nats.connect(settings.nats_url)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(settings.stream)
    finally:
        await nc.close()
