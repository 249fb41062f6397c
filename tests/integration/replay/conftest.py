"""Each replay test gets a database of its own: replay swaps whole tables."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from cinderblock.runtime.infra import create_schemas
from tests.helpers.servers import Servers, fresh_database


@pytest_asyncio.fixture(loop_scope="session")
async def log_db(servers: Servers) -> AsyncIterator[str]:
    async with fresh_database(servers) as dsn:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            await create_schemas(pool)
        finally:
            await pool.close()
        yield dsn


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """``cinderblock <args>`` against ``dsn`` (CINDERBLOCK_DATABASE_URL): (code, stdout)."""
    from cinderblock.cli.main import main

    monkeypatch.setenv("CINDERBLOCK_LOG_LEVEL", "WARNING")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    async def run(dsn: str, *args: str) -> tuple[int, str]:
        monkeypatch.setenv("CINDERBLOCK_DATABASE_URL", dsn)
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(args))
        return code, capsys.readouterr().out

    try:
        yield run
    finally:
        root.handlers[:], root.level = handlers, level
