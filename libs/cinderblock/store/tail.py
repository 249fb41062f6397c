"""Follow the event log in consumer order: settled rows, woken by NOTIFY, polling as a
fallback. The relay and the projector both read the log through this."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg

from cinderblock.store.eventstore import Position, RecordedEvent, read_settled
from cinderblock.store.schema import EVENTS_CHANNEL

log = logging.getLogger(__name__)

# After a wake-up that found nothing settled yet (an older transaction still running
# somewhere in the cluster), look again after these delays before going idle.
_SETTLE_RETRIES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


class LogTail:
    """Yields batches of settled events after a position until ``stop`` is set."""

    def __init__(self, pool: asyncpg.Pool, *, batch_size: int = 500, idle_poll: float = 0.5):
        self.pool = pool
        self.batch_size = batch_size
        self.idle_poll = idle_poll
        self._wake = asyncio.Event()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def batches(
        self, after: Position, stop: asyncio.Event
    ) -> AsyncIterator[list[RecordedEvent]]:
        async with self.pool.acquire() as listener:
            await listener.add_listener(EVENTS_CHANNEL, self._on_notify)
            try:
                async for batch in self._follow(after, stop):
                    yield batch
            finally:
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                    await listener.remove_listener(EVENTS_CHANNEL, self._on_notify)

    async def _follow(
        self, after: Position, stop: asyncio.Event
    ) -> AsyncIterator[list[RecordedEvent]]:
        retries = 0
        while not stop.is_set():
            self._wake.clear()
            async with self.pool.acquire() as conn:
                batch = await read_settled(conn, after, self.batch_size)
            if batch:
                retries = 0
                yield batch
                after = batch[-1].at
                continue
            if 0 < retries <= len(_SETTLE_RETRIES):
                delay = _SETTLE_RETRIES[retries - 1]
                retries += 1
            else:
                delay = self.idle_poll
                retries = 0
            woke = await _wait_any(self._wake, stop, delay)
            if woke and retries == 0:
                retries = 1


async def _wait_any(wake: asyncio.Event, stop: asyncio.Event, timeout: float) -> bool:
    """Wait for ``wake`` or ``stop`` for at most ``timeout``; True if ``wake`` fired."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    return wake.is_set()
