"""Read-your-writes: wait, bounded, until the projector has applied a given log position.

The projector NOTIFYs ``cinderblock_projected`` with "<tx_id>:<position>" after each batch;
one listening connection per process keeps the watermark and wakes waiters. No polling
back-off: a periodic re-read of the tracking row only covers missed notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from cinderblock.readmodels.queries import projected_position
from cinderblock.readmodels.schema import PROJECTED_CHANNEL

log = logging.getLogger(__name__)


class ProjectionWaiter:
    def __init__(
        self, pool: asyncpg.Pool, projection: str = "volumes", *, refresh: float = 0.25
    ) -> None:
        self.pool = pool
        self.projection = projection
        self.refresh = refresh
        self.watermark: tuple[int, int] = (0, 0)
        self._changed = asyncio.Condition()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiting = 0

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

    def _advance(self, at: tuple[int, int]) -> None:
        if at > self.watermark:
            self.watermark = at
            asyncio.get_running_loop().create_task(self._notify_all())

    async def _notify_all(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            if not self._waiting:
                continue
            try:
                async with self.pool.acquire() as conn:
                    self._advance(await projected_position(conn, self.projection))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("projection position refresh failed: %s", err)

    async def wait_for(self, at: tuple[int, int], timeout: float) -> bool:
        """True once the projection has reached ``at``; False after ``timeout`` seconds."""
        if self.watermark >= at:
            return True
        self._waiting += 1
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self.watermark >= at)
        except TimeoutError:
            log.warning("read model behind", extra={"position": f"{at[0]}:{at[1]}"})
            return False
        finally:
            self._waiting -= 1
        return True
