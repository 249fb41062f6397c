"""`cinderblock bench-log` writes into a database of its own (``--database``, created on the
target's server), never into the live log unless told to with ``--live`` (issue 13): a
benchmark's generated volumes must not reach a running system's projector, relay and
sagas."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from cinderblock.cli.target import with_database
from tests.helpers.servers import Servers, fresh_database


async def _events(dsn: str) -> int | None:
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass('events') IS NOT NULL"):
            return None
        count: int = await conn.fetchval("SELECT count(*) FROM events")
        return count
    finally:
        await conn.close()


async def test_bench_log_keeps_out_of_the_live_database(servers: Servers, cli: Any) -> None:
    own = f"cbt_bench_{uuid.uuid4().hex[:12]}"
    async with fresh_database(servers) as live:
        try:
            code, out = await cli(live, "bench-log", "--events", "500", "--database", own)
            assert code == 0, out
            assert f"into database {own}" in out
            assert await _events(live) is None  # the live database is untouched
            assert await _events(with_database(live, own)) == 500
            # Again into the same database: refused unless --append says so.
            code, out = await cli(live, "bench-log", "--events", "500", "--database", own)
            assert (code, out) == (2, "")
            more = ("bench-log", "--events", "500", "--database", own, "--append")
            code, out = await cli(live, *more)
            assert (code, out) == (2, "")  # the same seed: the same volumes again
            code, _ = await cli(live, *more, "--seed", "1")
            assert code == 0
            assert await _events(with_database(live, own)) == 1000
            # --live: into the target database itself.
            code, _ = await cli(live, "bench-log", "--events", "300", "--live")
            assert code == 0
            assert await _events(live) == 300
        finally:
            admin = await asyncpg.connect(servers.database_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{own}" WITH (FORCE)')
            finally:
                await admin.close()
