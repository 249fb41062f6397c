"""The database going away is an outage, not a bug: the requests it fails answer 503
``serviceUnavailable`` with ``Retry-After``, and the process says once that the database
is lost and once that it is back (asyncpg's pool reconnects by itself on the next acquire,
so no request waits for that line and nothing restarts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from aiohttp import web

from cinderblock.runtime.outage import database_unavailable

__all__ = ["RETRY_AFTER", "DatabaseWatch", "database_unavailable"]

log = logging.getLogger(__name__)

# Seconds a client is told to wait before asking again while the database is away.
RETRY_AFTER = 5


class DatabaseWatch:
    """One log line when the database is lost, one when it is back.

    A request failed by the outage calls :meth:`lost`; the first call logs and starts a
    probe (``SELECT 1`` through the pool every ``probe_every`` seconds) whose first success
    logs the return. Requests never wait for the probe: each one asks the pool itself."""

    def __init__(self, pool: asyncpg.Pool, *, probe_every: float = 1.0) -> None:
        self._pool = pool
        self._probe_every = probe_every
        self._probe: asyncio.Task[None] | None = None
        self._lost_at = 0.0

    @property
    def down(self) -> bool:
        return self._probe is not None and not self._probe.done()

    def lost(self, err: BaseException) -> None:
        if self.down:
            return
        loop = asyncio.get_running_loop()
        self._lost_at = loop.time()
        log.error(
            "database unavailable: requests answer 503 until it is back (%s: %s)",
            type(err).__name__,
            err,
        )
        self._probe = loop.create_task(self._until_back(), name="database-watch")

    async def _until_back(self) -> None:
        while True:
            await asyncio.sleep(self._probe_every)
            try:
                async with self._pool.acquire(timeout=self._probe_every * 5) as conn:
                    await conn.fetchval("SELECT 1", timeout=self._probe_every * 5)
            except Exception as err:
                log.debug("database still unavailable: %r", err)
                continue
            down_for = asyncio.get_running_loop().time() - self._lost_at
            log.warning(
                "database available again after %.1f s", down_for, extra={"down_s": down_for}
            )
            return

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe


DATABASE_WATCH = web.AppKey("database_watch", DatabaseWatch)
