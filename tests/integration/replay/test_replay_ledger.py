"""The usage ledger rebuilt in replay's pass (``replay(..., ledger=...)``): with one process
or several (each folding its share of the volumes), and when the last volumes are refolded
from their history, it equals the fold of each volume's whole story through the billing
consumer's rule (``usage.ledger.volume_intervals``, what the consumer's slow path writes);
a volume whose events the fold cannot take is quarantined for the billing consumer."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import pytest
from eventsourcing.persistence import StoredEvent

from cinderblock.cli.eventlog import generate
from cinderblock.readmodels.tables import PROJECTED_TABLES
from cinderblock.replay.ledger import VOLUME_TOPICS
from cinderblock.replay.rebuild import Rebuild, replay
from cinderblock.replay.session import connections
from cinderblock.store.eventstore import Position
from cinderblock.store.mapping import make_mapper
from cinderblock.usage.ledger import volume_intervals
from cinderblock.usage.store import INTERVAL_COLUMNS, interval_row
from tests.helpers.events import append_raw, new_volume

# Parallel replay starts worker processes (see test_replay_log.py).
pytestmark = pytest.mark.filterwarnings("ignore:Using fork\\(\\) is a bad idea:DeprecationWarning")

CONSUMER = "billing"
_INTERVALS = f"SELECT {', '.join(INTERVAL_COLUMNS)} FROM billing_intervals"


async def _ledger(conn: asyncpg.Connection) -> tuple[set[tuple[Any, ...]], dict[UUID, int]]:
    intervals = {tuple(r) for r in await conn.fetch(_INTERVALS)}
    versions = {
        r["volume_id"]: r["version"]
        for r in await conn.fetch("SELECT volume_id, version FROM billing_volumes")
    }
    return intervals, versions


async def _folded_whole(conn: asyncpg.Connection) -> tuple[set[tuple[Any, ...]], dict[UUID, int]]:
    """Each volume's (and snapshot's) whole story through the mapper and
    ``volume_intervals``."""
    mapper = make_mapper()
    rows = await conn.fetch(
        "SELECT originator_id, originator_version, topic, state FROM events "
        "WHERE topic LIKE ANY($1::text[]) ORDER BY originator_id, originator_version",
        [t + "%" for t in VOLUME_TOPICS],
    )
    stories: dict[UUID, list[Any]] = {}
    for r in rows:
        stored = StoredEvent(r["originator_id"], r["originator_version"], r["topic"], r["state"])
        stories.setdefault(r["originator_id"], []).append(mapper.to_domain_event(stored))
    intervals = {
        interval_row(vid, i)
        for vid, events in stories.items()
        for i in volume_intervals(str(vid), events)
    }
    return intervals, {vid: events[-1].originator_version for vid, events in stories.items()}


@pytest.mark.parametrize("workers", [1, 3])
async def test_the_ledger_rebuilt_in_the_replay_pass_equals_the_whole_fold(
    log_db: str, workers: int
) -> None:
    await generate(log_db, 12_000, seed=11)
    conn = await asyncpg.connect(log_db)
    try:
        await conn.execute("DELETE FROM billing_intervals")  # nothing left from the live side
        done = await replay(log_db, workers=workers, ledger=CONSUMER)
        assert done.workers == workers
        assert done.ledger is not None
        intervals, versions = await _ledger(conn)
        expected_intervals, expected_versions = await _folded_whole(conn)
        assert intervals == expected_intervals
        assert versions == expected_versions
        assert done.ledger.volumes == len(versions) > 100
        assert done.ledger.intervals == len(intervals)
        assert done.ledger.events == sum(expected_versions.values())
        assert done.ledger.quarantined == 0
        # The read models were rebuilt and swapped in the same run.
        assert set(done.tables) == set(PROJECTED_TABLES)
        assert done.swapped
        sides = "SELECT count(*) FROM pg_namespace WHERE nspname ~ '^rebuild_'"
        assert await conn.fetchval(sides) == 0
    finally:
        await conn.close()


async def test_volumes_after_the_folded_position_are_refolded_from_their_history(
    log_db: str,
) -> None:
    """The ledger folded along the pages up to the middle of the log; the volumes with
    later events are refolded (``ledger.catch_up``, then under the lock in ``swap``)."""
    await generate(log_db, 6_000, seed=5)
    async with connections(log_db, exclusive=True) as (conn, reader):
        middle = await reader.fetchrow(
            "SELECT tx_id::text::bigint, position FROM events ORDER BY tx_id, position "
            "OFFSET 3000 LIMIT 1"
        )
        rebuild = Rebuild(conn, reader, (), dsn=log_db, workers=1, ledger=CONSUMER)
        try:
            await rebuild.prepare()
            await rebuild.fold(Position(middle[0], middle[1]))
            assert rebuild.result.events == 3001
            later = new_volume()
            later.complete_create("h@b#p")
            pool = await asyncpg.create_pool(log_db, min_size=1, max_size=1)
            try:
                await append_raw(pool, later)  # after the settled end the catch-up reads
                await rebuild.ledger_catch_up()
                done = new_volume()
                done.complete_create("h@b#p")
                await append_raw(pool, done)  # under the lock only
            finally:
                await pool.close()
            await rebuild.swap_ledger()
        finally:
            await rebuild.drop()
        assert rebuild.result.ledger is not None
        intervals, versions = await _ledger(conn)
        expected_intervals, expected_versions = await _folded_whole(conn)
        assert versions == expected_versions
        assert intervals == expected_intervals
        assert versions[later.id] == versions[done.id] == 2
        assert rebuild.result.ledger.events == sum(expected_versions.values())


async def test_a_volume_with_events_after_its_ledger_was_complete_is_refolded(
    log_db: str,
) -> None:
    """Deleted, then one more event (the log allows it): the fold had written the volume's
    ledger as complete; its later event makes the worker refold it from its history."""
    pool = await asyncpg.create_pool(log_db, min_size=1, max_size=2)
    try:
        gone = new_volume()
        gone.complete_create("h@b#p")
        gone.request_delete()
        gone.complete_delete()
        await append_raw(pool, gone)
        other = new_volume()
        other.complete_create("h@b#p")
        other.set_bootable(True)
        await append_raw(pool, other)
        stored = await pool.fetchrow(
            "SELECT topic, state FROM events WHERE originator_id = $1 AND originator_version = 3",
            other.id,
        )
        await pool.execute(
            "INSERT INTO events (originator_id, originator_version, topic, state) "
            "VALUES ($1, $2, $3, $4)",
            gone.id,
            gone.version + 1,
            stored["topic"],
            stored["state"],
        )
        for workers in (1, 2):
            done = await replay(log_db, (), workers=workers, ledger=CONSUMER)
            assert done.ledger is not None
            assert done.ledger.volumes == 2
            async with pool.acquire() as conn:
                assert await _ledger(conn) == await _folded_whole(conn)
                assert (await _ledger(conn))[1][gone.id] == gone.version + 1
    finally:
        await pool.close()


async def test_a_volume_the_fold_cannot_take_is_quarantined_and_released_once_it_folds(
    log_db: str,
) -> None:
    """As the billing consumer (and the old sequential rebuild) do: the volume's ledger
    stays as the event before left it, its later events are held; a fixed event folds."""
    pool = await asyncpg.create_pool(log_db, min_size=1, max_size=2)
    try:
        poison = new_volume()
        poison.complete_create("h@b#p")
        poison.set_bootable(True)
        poison.set_bootable(False)
        state = make_mapper().to_stored_event(poison.pending_events[2]).state
        await append_raw(pool, poison, {3: state.split(b',"bootable"')[0] + b"}"})
        good = new_volume()
        good.complete_create("h@b#p")
        await append_raw(pool, good)
        held = (
            "SELECT version, held, error FROM quarantine WHERE consumer = $1 AND aggregate_id = $2 "
            "ORDER BY version"
        )
        version = "SELECT version FROM billing_volumes WHERE volume_id = $1"
        for workers in (1, 2):
            done = await replay(log_db, (), workers=workers, ledger=CONSUMER)
            assert done.ledger is not None
            assert done.ledger.quarantined == 1
            rows = await pool.fetch(held, CONSUMER, poison.id)
            assert [(r["version"], r["held"]) for r in rows] == [(3, False), (4, True)]
            assert "TypeError" in rows[0]["error"]
            assert await pool.fetchval(version, poison.id) == 2
            assert await pool.fetchval(version, good.id) == 2
            opened = await pool.fetch(
                "SELECT start_version FROM billing_intervals WHERE volume_id = $1", poison.id
            )
            assert [r["start_version"] for r in opened] == [1, 2]

        await pool.execute(
            "UPDATE events SET state = $2 WHERE originator_id = $1 AND originator_version = 3",
            poison.id,
            state,
        )
        done = await replay(log_db, (), ledger=CONSUMER)
        assert done.ledger is not None
        assert done.ledger.quarantined == 0
        assert await pool.fetchval(version, poison.id) == 4
        assert await pool.fetch(held, CONSUMER, poison.id) == []
    finally:
        await pool.close()
