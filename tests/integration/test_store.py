"""The asyncpg event store on real PostgreSQL: round trips, optimistic concurrency,
atomic multi-aggregate saves, and settled-row reads that never skip a late committer."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from cinderblock.domain.quota import ProjectQuota
from cinderblock.domain.volume import Volume
from cinderblock.store.eventstore import (
    AsyncEventStore,
    ConcurrencyConflictError,
    Position,
    read_settled,
)
from tests.helpers.events import new_volume


async def test_save_and_load_round_trip(pool: asyncpg.Pool) -> None:
    store = AsyncEventStore(pool)
    volume = new_volume()
    volume.complete_create("h@b#p")
    volume.set_bootable(True)
    at = await store.save(volume, meta={"request_id": "req-1"})
    assert at.position > 0
    loaded = await AsyncEventStore(pool).load(volume.id, Volume)  # a cold cache
    assert loaded is not None
    assert (loaded.version, loaded.status, loaded.bootable, loaded.host) == (
        3,
        volume.status,
        True,
        "h@b#p",
    )
    meta = await pool.fetchval(
        "SELECT meta->>'request_id' FROM events WHERE originator_id = $1 "
        "AND originator_version = 3",
        volume.id,
    )
    assert meta == "req-1"


async def test_concurrent_writers_conflict(pool: asyncpg.Pool) -> None:
    store_a, store_b = AsyncEventStore(pool), AsyncEventStore(pool)
    volume = new_volume()
    await store_a.save(volume, meta={})
    a = await store_a.load(volume.id, Volume)
    b = await store_b.load(volume.id, Volume)
    assert a is not None
    assert b is not None
    a.set_bootable(True)
    b.set_bootable(False)
    await store_a.save(a, meta={})
    with pytest.raises(ConcurrencyConflictError):
        await store_b.save(b, meta={})
    reloaded = await store_b.load(volume.id, Volume)
    assert reloaded is not None
    assert reloaded.bootable is True


async def test_multi_aggregate_save_is_atomic(pool: asyncpg.Pool) -> None:
    store = AsyncEventStore(pool)
    project = uuid.uuid4().hex
    quota = ProjectQuota.start(project)
    await store.save(quota, meta={})
    stale = await AsyncEventStore(pool).load(quota.id, ProjectQuota)
    fresh = await store.load(quota.id, ProjectQuota)
    assert stale is not None
    assert fresh is not None
    fresh.release_usage({"volumes": 1}, reason="x")
    await store.save(fresh, meta={})
    volume = new_volume(project)
    stale.consume({"volumes": 1}, {"volumes": 10}, size_gb=1, reason="y")
    with pytest.raises(ConcurrencyConflictError):
        await store.save(volume, stale, meta={})
    count = await pool.fetchval("SELECT count(*) FROM events WHERE originator_id = $1", volume.id)
    assert count == 0  # the volume's events were not written either


async def test_settled_reads_wait_for_a_late_committer(pool: asyncpg.Pool) -> None:
    store = AsyncEventStore(pool)
    start = await store.save(new_volume(), meta={})
    after = Position(start.tx_id, start.position)
    slow = await pool.acquire()
    try:
        tx = slow.transaction()
        await tx.start()
        early = uuid.uuid4()
        await slow.execute(
            "INSERT INTO events (originator_id, originator_version, topic, state) "
            "VALUES ($1, 1, 'test:Early', '{}'::bytea)",
            early,
        )
        late = new_volume()
        await store.save(late, meta={})  # commits while the early writer is still open
        async with pool.acquire() as conn:
            seen = [r.originator_id for r in await read_settled(conn, after, 1000)]
        assert late.id not in seen
        assert early not in seen
        await tx.commit()
    finally:
        await pool.release(slow)
    async with pool.acquire() as conn:
        seen = [r.originator_id for r in await read_settled(conn, after, 1000)]
    assert seen.index(early) < seen.index(late.id)  # commit order is transaction order
    await pool.execute("DELETE FROM events WHERE originator_id = $1", early)
