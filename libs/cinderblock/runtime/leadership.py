"""One active instance per role: a session advisory lock held on a dedicated connection.
If the holder dies, PostgreSQL releases the lock and a standby takes over."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def leadership(
    pool: asyncpg.Pool, role: str, stop: asyncio.Event, *, retry: float = 1.0
) -> AsyncIterator[bool]:
    """Yields True once this process holds ``role``; False if ``stop`` came first."""
    async with pool.acquire() as conn:
        held = False
        while not stop.is_set():
            held = await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", role)
            if held:
                break
            log.info("standing by: another instance is active", extra={"role": role})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry)
        try:
            yield held
        finally:
            if held:
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                    await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", role)
