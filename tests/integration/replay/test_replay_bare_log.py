"""`cinderblock replay` and `verify` on a database that holds nothing but the event log
(``bench-log`` into a new database, a restored dump of ``events``): they make the read
models' tables first, as every service does at start, instead of failing on a missing
table (found by ops/bench/replay_bench.py: both exited 1 on "relation quarantine does not
exist")."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from tests.helpers.servers import Servers, fresh_database


async def test_replay_and_verify_a_log_with_no_read_models(servers: Servers, cli: Any) -> None:
    async with fresh_database(servers) as dsn:
        code, out = await cli(dsn, "bench-log", "--events", "3000", "--seed", "7", "--live")
        assert code == 0, out
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT to_regclass('volumes') IS NULL")
        finally:
            await conn.close()
        code, out = await cli(dsn, "verify", "--json")
        assert code == 0, out  # nothing projected yet: verify compares up to position 0
        assert json.loads(out)["events"] == 0
        code, out = await cli(dsn, "replay", "--json")
        assert code == 0, out
        assert json.loads(out)["events"] == 3000
        code, out = await cli(dsn, "verify", "--json")
        assert code == 0, out
        verified = json.loads(out)
        assert (verified["identical"], verified["events"]) == (True, 3000)
