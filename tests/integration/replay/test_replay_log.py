"""Replay and verify on a generated log of 100,000 events (the generator drives the real
aggregates), and the live projector's SQL and replay's fold agreeing row for row."""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg
import pytest

from cinderblock.cli.eventlog import generate
from cinderblock.projector.run import Projector
from cinderblock.replay.rebuild import replay
from cinderblock.replay.verify import verify
from cinderblock.store.eventstore import START, read_settled

EVENTS = 100_000

# Parallel replay starts worker processes; on uvloop that runs the interpreter's at-fork
# hooks, and eventlet (imported by other tests of the session, through oslo.messaging)
# warns from one. Nothing here uses eventlet.
pytestmark = pytest.mark.filterwarnings("ignore:Using fork\\(\\) is a bad idea:DeprecationWarning")


async def test_replay_then_verify_on_100k_events_and_tampering_is_found(
    log_db: str, cli: Any
) -> None:
    started = time.perf_counter()
    count, _ = await generate(log_db, EVENTS, seed=7)
    assert count == EVENTS
    code, out = await cli(log_db, "replay", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["events"] == EVENTS
    assert summary["tables"] == [
        "volumes",
        "attachments",
        "snapshots",
        "volume_types",
        "quotas",
        "messages",
    ]
    # Verify folds with two processes (disjoint shares of the aggregates), replay with one.
    code, out = await cli(log_db, "verify", "--json", "--workers", "2")
    assert code == 0, out
    verified = json.loads(out)
    assert verified["identical"]
    assert verified["differences"] == []
    assert verified["rows"]["volumes"] > 1_000
    assert verified["rows"]["attachments"] > 1_000
    assert verified["rows"]["messages"] > 100  # extends that found no room, some deleted
    print(f"100k events generated, replayed and verified in {time.perf_counter() - started:.1f}s")

    conn = await asyncpg.connect(log_db)
    try:
        tampered = await conn.fetchrow(
            "UPDATE volumes SET size = size + 100 WHERE id = "
            "(SELECT id FROM volumes WHERE NOT deleted ORDER BY id LIMIT 1) "
            "RETURNING id, size"
        )
        dropped = await conn.fetchval(
            "DELETE FROM attachments WHERE id = (SELECT id FROM attachments ORDER BY id LIMIT 1) "
            "RETURNING id"
        )
        tracked = await conn.fetchval("SELECT position FROM tracking WHERE name = 'volumes'")
    finally:
        await conn.close()
    code, out = await cli(log_db, "verify")
    assert code == 1
    lines = out.splitlines()
    assert (
        f"volumes {tampered['id']} size: live={tampered['size']} rebuilt={tampered['size'] - 100}"
        in lines
    )
    assert f'attachments {dropped} *: live="<no row>" rebuilt="present"' in lines
    assert lines[-1].startswith("verify: 2 difference(s)")
    assert str(tracked) in lines[-1]


async def test_live_projector_and_replay_fold_agree(log_db: str) -> None:
    await generate(log_db, 8_000, seed=3)
    pool = await asyncpg.create_pool(log_db, min_size=1, max_size=2)
    try:
        projector = Projector(pool)
        after = START
        while True:
            async with pool.acquire() as conn:
                batch = await read_settled(conn, after, 500)
            if not batch:
                break
            await projector.project(batch)
            after = batch[-1].at
    finally:
        await pool.close()
    result = await verify(log_db)
    assert result.rebuilt.events == 8_000
    assert result.differences == []
    assert result.rows["volumes"] > 100


async def test_a_single_projection_is_rebuilt_and_the_others_are_left(log_db: str) -> None:
    await generate(log_db, 5_000, seed=5)
    await replay(log_db)
    conn = await asyncpg.connect(log_db)
    try:
        before = await conn.fetchval("SELECT 'volumes'::regclass::oid")
        snapshots_before = await conn.fetchval("SELECT 'snapshots'::regclass::oid")
        await conn.execute("UPDATE snapshots SET name = 'tampered'")
        done = await replay(log_db, ["snapshots"])
        assert done.tables == ("snapshots",)
        assert await conn.fetchval("SELECT 'volumes'::regclass::oid") == before
        assert await conn.fetchval("SELECT 'snapshots'::regclass::oid") != snapshots_before
        assert await conn.fetchval("SELECT count(*) FROM snapshots WHERE name = 'tampered'") == 0
        leftovers = await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild%'"
        )
        assert leftovers == 0
    finally:
        await conn.close()
    assert (await verify(log_db)).differences == []


async def test_unknown_projection_is_refused(log_db: str, cli: Any) -> None:
    with pytest.raises(SystemExit) as exit_:
        await cli(log_db, "replay", "--projection", "volumes,nope")
    assert exit_.value.code == 2


async def test_a_small_row_cache_evicts_and_reloads_rows_with_the_same_result(
    log_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory stays flat because rows leave the cache (written first) and are read back
    when a later event needs them; the result must not change."""
    from cinderblock.replay import rebuild

    await generate(log_db, 20_000, seed=13)
    monkeypatch.setattr(rebuild, "KEEP_ROWS", 400)
    done = await replay(log_db, workers=1)
    assert done.events == 20_000
    monkeypatch.undo()
    result = await verify(log_db, workers=1)
    assert result.differences == []
    assert result.rows["volumes"] > 400


async def test_one_replay_at_a_time_and_leftovers_of_a_killed_one_are_dropped(
    log_db: str,
) -> None:
    from cinderblock.replay.session import REPLAY_LOCK, ReplayBusyError

    await generate(log_db, 2_000, seed=17)
    conn = await asyncpg.connect(log_db)
    try:
        await conn.execute("CREATE SCHEMA rebuild_123; CREATE TABLE rebuild_123.volumes (x int)")
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", REPLAY_LOCK)
        with pytest.raises(ReplayBusyError):
            await replay(log_db)
        with pytest.raises(ReplayBusyError):
            await verify(log_db)
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", REPLAY_LOCK)
        assert (await replay(log_db)).events == 2_000
        assert await conn.fetchval("SELECT to_regnamespace('rebuild_123')") is None
    finally:
        await conn.close()


async def test_a_failing_worker_fails_the_rebuild_with_its_error(log_db: str) -> None:
    from cinderblock.replay.parallel import fold_in_parallel
    from cinderblock.store.eventstore import Position

    with pytest.raises(RuntimeError, match="no table"):
        await fold_in_parallel(log_db, "no_such_schema", ["volumes"], Position(1, 1), 2)


async def test_odd_values_fold_as_the_live_sql_projects_them(log_db: str) -> None:
    """Numbers and booleans where text is expected, a null name, an attachment without
    instance or mode: the fold must store what the live statements store."""
    from cinderblock.store.eventstore import AsyncEventStore
    from tests.helpers.events import new_volume

    pool = await asyncpg.create_pool(log_db, min_size=1, max_size=2)
    try:
        store = AsyncEventStore(pool)
        volume = new_volume("odd")
        volume.complete_create("h@b#p")
        volume.update({"name": None, "description": 5})
        volume.update({"name": True})
        volume.create_attachment(
            "7d0c7a4e-0000-4000-8000-000000000001", instance_uuid=None, mode=None
        )
        await store.save(volume, meta={})
        projector = Projector(pool)
        async with pool.acquire() as conn:
            batch = await read_settled(conn, START, 1_000)
        await projector.project(batch)
    finally:
        await pool.close()
    result = await verify(log_db)
    assert result.differences == []
    conn = await asyncpg.connect(log_db)
    try:
        row = await conn.fetchrow(
            "SELECT name, description, metadata::text AS metadata FROM volumes WHERE id = $1",
            volume.id,
        )
    finally:
        await conn.close()
    assert dict(row) == {"name": "true", "description": "5", "metadata": "{}"}
