"""Read-your-writes: wait, bounded, until the projector has applied a given log position.

The projector NOTIFYs ``cinderblock_projected`` with "<tx_id>:<position>" after each batch;
one listening connection per process keeps the watermark and resolves, in position order,
the waiters it has passed. No polling back-off: a periodic re-read of the tracking row only
covers notifications missed while the connection was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging

import asyncpg

from cinderblock.readmodels.queries import projected_position
from cinderblock.readmodels.schema import PROJECTED_CHANNEL

log = logging.getLogger(__name__)

At = tuple[int, int]


class ProjectionWaiter:
    def __init__(
        self, pool: asyncpg.Pool, projection: str = "volumes", *, refresh: float = 0.25
    ) -> None:
        self.pool = pool
        self.projection = projection
        self.refresh = refresh
        self.watermark: At = (0, 0)
        self._waiters: list[tuple[At, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._conn = await self.pool.acquire()
        await self._conn.add_listener(PROJECTED_CHANNEL, self._on_notify)
        async with self.pool.acquire() as conn:
            self._advance(await projected_position(conn, self.projection))
        self._task = asyncio.create_task(self._refresh_loop(), name="projection-waiter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                await self._conn.remove_listener(PROJECTED_CHANNEL, self._on_notify)
            await self.pool.release(self._conn)
            self._conn = None

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        tx, _, pos = payload.partition(":")
        self._advance((int(tx), int(pos)))

    def _advance(self, at: At) -> None:
        if at <= self.watermark:
            return
        self.watermark = at
        while self._waiters and self._waiters[0][0] <= at:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            if not self._waiters:
                continue
            try:
                async with self.pool.acquire() as conn:
                    self._advance(await projected_position(conn, self.projection))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("projection position refresh failed: %s", err)

    async def wait_for(self, at: At, timeout: float) -> bool:
        """True once the projection has reached ``at``; False after ``timeout`` seconds."""
        if self.watermark >= at:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (at, next(self._order), future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            # Callers log the lag with what they know (the API: request, volume, action).
            log.debug("read model behind", extra={"position": f"{at[0]}:{at[1]}"})
            return False
        return True
