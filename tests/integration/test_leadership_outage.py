"""A role's holder (relay, projector) waits out a database outage instead of exiting: the
database is cut through a TCP proxy while ``lead`` runs, and the same process takes the role
again and carries on once it is back (the chaos suite found both services exiting with code
1 when PostgreSQL was killed)."""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
import pytest

from cinderblock.runtime.leadership import lead
from tests.helpers.servers import Servers, fresh_database
from tests.integration.api_edge.proxy import Proxy

pytestmark = pytest.mark.integration


async def test_the_holder_waits_out_an_outage(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cinderblock.runtime.leadership")
    async with fresh_database(servers) as dsn:
        proxy = Proxy(dsn)
        await proxy.open()
        pool = await asyncpg.create_pool(proxy.dsn, min_size=1, max_size=3, timeout=2)
        stop = asyncio.Event()
        runs: list[int] = []  # one entry per start of the work
        beats = asyncio.Queue[int]()

        async def work(until: asyncio.Event) -> None:
            runs.append(len(runs) + 1)
            while not until.is_set():
                await pool.fetchval("SELECT 1")
                beats.put_nowait(len(runs))
                await asyncio.sleep(0.02)  # the work's own pace

        async def beat_of(run: int) -> None:
            async with asyncio.timeout(30):
                while await beats.get() != run:
                    pass

        role = f"test-{uuid.uuid4().hex[:8]}"
        task = asyncio.create_task(lead(pool, role, stop, work, retry=0.2))
        try:
            await beat_of(1)
            await proxy.close()  # the database goes away
            async with asyncio.timeout(30):
                while "the database is unavailable" not in caplog.text:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert not task.done()  # waiting, not exited
            await proxy.open()  # back
            await beat_of(2)  # the same process took the role again and works
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await pool.close()
            if proxy.listening:
                await proxy.close()
    assert caplog.text.count("the database is unavailable") == 1
    assert "the database is back" in caplog.text


async def test_any_other_error_ends_lead(servers: Servers) -> None:
    async with fresh_database(servers) as dsn:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:

            async def work(until: asyncio.Event) -> None:
                raise ValueError("a bug")

            with pytest.raises(ValueError, match="a bug"):
                await asyncio.wait_for(lead(pool, "test-bug", asyncio.Event(), work), 30)
        finally:
            await pool.close()
