"""Shared fixtures: real PostgreSQL and NATS JetStream for the whole session.

The servers are the ones named by CINDERBLOCK_DATABASE_URL / CINDERBLOCK_NATS_URL when
set, otherwise an embedded PostgreSQL and nats-server started here (the fresh-machine
path). Either way the session gets its own database and its own stream and subject
prefix, so runs never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
import pytest_asyncio

from cinderblock.config.settings import Settings
from tests.helpers.servers import (
    Servers,
    fresh_database,
    make_settings,
)

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
