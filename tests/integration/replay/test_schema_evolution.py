"""Volume.Extended v1 rows, as the store wrote them before the event gained
``previous_size_gb`` (class_version 2), still load: the aggregate, the live projector's
decoding and replay all see them upcast."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from eventsourcing.persistence import StoredEvent

from cinderblock.domain.volume import Volume
from cinderblock.replay.decode import Decoder
from cinderblock.replay.rebuild import replay
from cinderblock.replay.verify import verify
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.mapping import event_data, make_mapper
from tests.helpers.topics import STORED

FIXTURES = Path(__file__).parents[2] / "fixtures" / "events"


def v1_rows(fixture: str = "volume_extended_v1.json") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((FIXTURES / fixture).read_text())["rows"]
    return rows


async def load_fixture(dsn: str, fixture: str = "volume_extended_v1.json") -> uuid.UUID:
    """Write the fixture's rows into the log as the store wrote them; the first one's
    aggregate id."""
    rows = v1_rows(fixture)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO events (originator_id, originator_version, topic, state, meta) "
            "VALUES ($1::uuid, $2, $3, $4, $5::jsonb)",
            [
                (
                    r["originator_id"],
                    r["originator_version"],
                    r["topic"],
                    r["state"].encode(),
                    r["meta"],
                )
                for r in rows
            ],
        )
    finally:
        await conn.close()
    return uuid.UUID(rows[0]["originator_id"])


def test_fixture_topics_are_listed_and_v1_has_no_class_version() -> None:
    rows = v1_rows()
    assert {r["topic"] for r in rows} <= set(STORED)
    extended = [r for r in rows if r["topic"].endswith(":Volume.Extended")]
    assert extended
    assert all("class_version" not in json.loads(r["state"]) for r in extended)
    assert Volume.Extended.class_version == 2


def test_v1_extended_is_upcast_by_the_mapper_and_by_replays_decoder() -> None:
    row = next(r for r in v1_rows() if r["topic"].endswith(":Volume.Extended"))
    stored = StoredEvent(
        uuid.UUID(row["originator_id"]),
        row["originator_version"],
        row["topic"],
        row["state"].encode(),
    )
    domain_event = make_mapper().to_domain_event(stored)
    assert isinstance(domain_event, Volume.Extended)
    assert domain_event.previous_size_gb is None
    fast = Decoder()(row["topic"], stored.originator_id, stored.originator_version, stored.state)
    assert fast is not None
    assert dict(fast.data) == event_data(domain_event)
    assert fast.data["previous_size_gb"] is None


async def test_v1_rows_reconstruct_the_volume_and_new_events_are_v2(log_db: str) -> None:
    volume_id = await load_fixture(log_db)
    pool = await asyncpg.create_pool(log_db, min_size=1, max_size=2)
    try:
        store = AsyncEventStore(pool)
        volume = await store.load(volume_id, Volume)
        assert volume is not None
        assert (volume.version, volume.size_gb, volume.status.value) == (6, 5, "available")
        volume.request_extend(8, in_use_allowed=False, reservation_id="r-v2")
        volume.complete_extend(volume.version)
        await store.save(volume, meta={})
        state = json.loads(
            await pool.fetchval(
                "SELECT convert_from(state, 'UTF8') FROM events "
                "WHERE originator_id = $1 AND originator_version = 8",
                volume_id,
            )
        )
        assert state["class_version"] == 2
        assert state["previous_size_gb"] == 5
        fresh = await AsyncEventStore(pool).load(volume_id, Volume)
        assert fresh is not None
        assert fresh.size_gb == 8
    finally:
        await pool.close()
    done = await replay(log_db)
    assert done.events == 8
    conn = await asyncpg.connect(log_db)
    try:
        row = await conn.fetchrow("SELECT size, version FROM volumes WHERE id = $1", volume_id)
    finally:
        await conn.close()
    assert (row["size"], row["version"]) == (8, 8)
    assert (await verify(log_db)).differences == []


# ---------------------------------------------------------------- outcomes' statuses (v2)

STATUS_FIXTURE = "volume_status_outcomes_v1.json"
RETYPE_A = uuid.UUID("7a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d")
MIGRATE_B = uuid.UUID("8b3c4d5e-6f7a-4b2c-9d3e-4f5a6b7c8d9e")
V2_OUTCOMES = ("Retyped", "RetypeFailed", "MigrationCompleted", "MigrationFailed")


def status_rows() -> list[dict[str, Any]]:
    return v1_rows(STATUS_FIXTURE)


def test_v1_outcomes_have_no_status_and_are_upcast_to_none_by_both_decoders() -> None:
    rows = [r for r in status_rows() if r["topic"].rpartition(".")[2] in V2_OUTCOMES]
    assert sorted({r["topic"].rpartition(".")[2] for r in rows}) == sorted(V2_OUTCOMES)
    assert {r["topic"] for r in status_rows()} <= set(STORED)
    for row in rows:
        assert "class_version" not in json.loads(row["state"])
        stored = StoredEvent(
            uuid.UUID(row["originator_id"]),
            row["originator_version"],
            row["topic"],
            row["state"].encode(),
        )
        domain_event = make_mapper().to_domain_event(stored)
        assert type(domain_event).class_version == 2
        assert domain_event.status is None
        fast = Decoder()(
            row["topic"], stored.originator_id, stored.originator_version, stored.state
        )
        assert fast is not None
        assert dict(fast.data) == event_data(domain_event)


async def test_v1_outcomes_rebuild_the_statuses_and_new_outcomes_carry_theirs(log_db: str) -> None:
    rows = status_rows()
    await load_fixture(log_db, STATUS_FIXTURE)
    pool = await asyncpg.create_pool(log_db, min_size=1, max_size=2)
    try:
        store = AsyncEventStore(pool)
        retyped = await store.load(RETYPE_A, Volume)
        migrated = await store.load(MIGRATE_B, Volume)
        assert retyped is not None
        assert migrated is not None
        # v1 outcomes led back to the status before (available), the failed retype restored
        # the type, the completed migration switched the host and the failed one kept it.
        assert (retyped.status.value, retyped.volume_type_name) == ("available", "gold")
        assert (migrated.status.value, migrated.host, migrated.migration_status) == (
            "available",
            "cb@file#pool-b",
            "error",
        )
        migrated.start_migration("cb@file#pool-a", force_host_copy=False, lock_volume=True)
        await store.save(migrated, meta={})
        assert migrated.status.value == "maintenance"
        migrated.fail_migration(migrated.version, "copy failed again")
        await store.save(migrated, meta={})
        state = json.loads(
            await pool.fetchval(
                "SELECT convert_from(state, 'UTF8') FROM events "
                "WHERE originator_id = $1 AND originator_version = $2",
                MIGRATE_B,
                migrated.version,
            )
        )
        assert (state["class_version"], state["status"]) == (2, "available")
    finally:
        await pool.close()
    done = await replay(log_db)
    assert done.events == len(rows) + 2
    conn = await asyncpg.connect(log_db)
    try:
        found = {
            r["id"]: (r["status"], r["volume_type_name"], r["host"])
            for r in await conn.fetch("SELECT id, status, volume_type_name, host FROM volumes")
        }
    finally:
        await conn.close()
    assert found == {
        RETYPE_A: ("available", "gold", "cb@file#pool-a"),
        MIGRATE_B: ("available", "__DEFAULT__", "cb@file#pool-b"),
    }
    assert (await verify(log_db)).differences == []
