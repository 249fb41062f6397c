"""Shared fixtures: real PostgreSQL and NATS JetStream for the whole session.

The servers are the ones named by CINDERBLOCK_DATABASE_URL / CINDERBLOCK_NATS_URL when
set, otherwise an embedded PostgreSQL and nats-server started here (the fresh-machine
path). Either way the session gets its own database and its own stream and subject
prefix, so runs never see each other's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import pytest
import pytest_asyncio

from cinderblock.config.settings import Settings

_TESTS = Path(__file__).resolve().parent
# The folder a test sits in says what it needs (STYLE.md section 10): every test under
# tests/unit is `unit`, and so on. Explicit markers still count (a contract test marked
# `unit` is both), so `pytest -m unit` runs the whole no-I/O layer.
DIRECTORY_MARKERS = {
    "unit": "unit",
    "integration": "integration",
    "e2e": "e2e",
    "contract": "contract",
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            folder = item.path.resolve().relative_to(_TESTS).parts[0]
        except (ValueError, IndexError):
            continue
        marker = DIRECTORY_MARKERS.get(folder)
        if marker is not None and item.get_closest_marker(marker) is None:
            item.add_marker(marker)


@dataclass(frozen=True)
class Servers:
    database_url: str  # the server's maintenance database
    nats_url: str


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    database_url = os.environ.get("CINDERBLOCK_DATABASE_URL")
    nats_url = os.environ.get("CINDERBLOCK_NATS_URL")
    if database_url and nats_url:
        yield Servers(database_url, nats_url)
        return
    from cinderblock.cli.embedded import EmbeddedNats, EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="cbt-", dir="/tmp"))
    postgres, nats_server = EmbeddedPostgres(root), EmbeddedNats(root)
    try:
        dsn = database_url or postgres.start()
        url = nats_url or nats_server.start()
        yield Servers(dsn, url)
    finally:
        nats_server.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


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


@pytest_asyncio.fixture(scope="session")
async def database_url(servers: Servers) -> AsyncIterator[str]:
    """The database of the integration tests (the e2e system has its own)."""
    async with fresh_database(servers) as url:
        yield url


@pytest.fixture(scope="session")
def session_tag() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="cbt-data-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


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


@pytest_asyncio.fixture(scope="session")
async def settings(
    database_url: str, servers: Servers, session_tag: str, data_dir: Path
) -> AsyncIterator[Settings]:
    s = make_settings(database_url, servers.nats_url, session_tag, data_dir)
    yield s
    with contextlib.suppress(Exception):
        nc = await nats.connect(servers.nats_url)
        js = nc.jetstream()
        for stream in await js.streams_info():
            name = stream.config.name or ""
            if name == s.stream or name.startswith(f"{s.stream}_"):
                await js.delete_stream(name)
        await nc.close()


@pytest_asyncio.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    from cinderblock.runtime.infra import create_schemas

    p = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=8)
    await create_schemas(p)
    yield p
    await p.close()


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
