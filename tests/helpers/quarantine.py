"""Waiting on what a consumer does, not on time: `Wakes` is set by every handler, park and
gate call; `WatchedQuarantine` is the consumer quarantine (holding) that sets it."""

from __future__ import annotations

import asyncio

import asyncpg
from nats.aio.msg import Msg

from cinderblock.readmodels.quarantine import ConsumerQuarantine


class Wakes:
    """Set by every handler, park and gate call, so the test waits on what the consumer
    does, not on time."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.event.set()

    async def until(self, check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
        async with asyncio.timeout(timeout):
            while True:
                self.event.clear()
                if found := await check():
                    return found
                await self.event.wait()


class WatchedQuarantine(ConsumerQuarantine):
    def __init__(self, pool: asyncpg.Pool, consumer: str, wake: Wakes) -> None:
        super().__init__(pool, consumer, hold=True, refresh=0.0)
        self.wake = wake

    async def admit(self, msg: Msg) -> bool:
        try:
            return await super().admit(msg)
        finally:
            self.wake()

    async def gave_up(self, msg: Msg, err: BaseException) -> None:
        try:
            await super().gave_up(msg, err)
        finally:
            self.wake()
