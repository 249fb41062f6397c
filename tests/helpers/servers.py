"""The servers a test session runs against and what tests do with them: a fresh database
per use, the settings of a session (a stream and subject prefix of its own), and waiting
on the projector's NOTIFY instead of sleeping. The fixtures in tests/conftest.py use these;
test modules import them from here, not from a conftest."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from cinderblock.config.settings import Settings


@dataclass(frozen=True)
class Servers:
    database_url: str  # the server's maintenance database
    nats_url: str


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def fresh_database(servers: Servers) -> AsyncIterator[str]:
    """A new database on the session's server, dropped afterwards."""
    name = f"cbt_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(servers.database_url, name)
    finally:
        admin = await asyncpg.connect(servers.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def make_settings(database_url: str, nats_url: str, tag: str, data_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        nats_url=nats_url,
        port=0,
        data_dir=data_dir,
        stream=f"T_{tag}",
        subject_prefix=f"t{tag}.",
        saga_max_deliver=3,
        saga_ack_wait=5.0,
        log_format="text",
        log_level="WARNING",
    )


class Projected:
    """Wakes on every batch the projector commits (its NOTIFY), so tests wait on events,
    not on fixed sleeps."""

    def __init__(self) -> None:
        self.changed = asyncio.Condition()

    def on_notify(self, *_: object) -> None:
        asyncio.get_running_loop().create_task(self._wake())

    async def _wake(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def until(self, check, *, timeout: float = 15.0):  # type: ignore[no-untyped-def]
        """Re-run the async ``check`` after each projected batch until it returns a truthy
        value; fail with the last value after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await check()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"not reached in {timeout}s; last value: {value!r}")
            # The short cap only guards against a notification that raced the check.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 0.5)), self.changed:
                    await self.changed.wait()


@contextlib.asynccontextmanager
async def listening(pool: asyncpg.Pool) -> AsyncIterator[Projected]:
    from cinderblock.readmodels.schema import PROJECTED_CHANNEL

    waiter = Projected()
    conn = await pool.acquire()
    await conn.add_listener(PROJECTED_CHANNEL, waiter.on_notify)
    try:
        yield waiter
    finally:
        await conn.remove_listener(PROJECTED_CHANNEL, waiter.on_notify)
        await pool.release(conn)
