"""One active instance per role: a session advisory lock held on a dedicated connection.
If the holder dies, PostgreSQL releases the lock with its session and a standby, asking
every ``retry`` seconds, takes over (tests/integration/test_standbys.py)."""

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
        held = waited = False
        while not stop.is_set():
            held = await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", role)
            if held:
                if waited:
                    log.info("taking over: no other instance is active", extra={"role": role})
                break
            if not waited:  # once: a standby may wait for weeks
                log.info("standing by: another instance is active", extra={"role": role})
                waited = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry)
        try:
            yield held
        finally:
            if held:
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                    await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", role)
