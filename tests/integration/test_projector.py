"""The projector applies each event once in effect: the same batch twice, or events it
already reflected, change nothing."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from cinderblock.domain.volume import Volume
from cinderblock.projector.run import Projector
from cinderblock.store.eventstore import AsyncEventStore, Position, read_settled
from tests.helpers.events import new_volume


async def volume_row(pool: asyncpg.Pool, volume_id: uuid.UUID) -> dict:
    row = await pool.fetchrow("SELECT * FROM volumes WHERE id = $1", volume_id)
    assert row is not None
    return dict(row)


async def events_of(pool: asyncpg.Pool, volume: Volume, since: Position) -> list:
    """The volume's settled events; waits while an unrelated older transaction elsewhere in
    the cluster still holds them back."""
    for _ in range(500):
        async with pool.acquire() as conn:
            found = [
                r for r in await read_settled(conn, since, 100_000) if r.originator_id == volume.id
            ]
        if len(found) == volume.version:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"events of {volume.id} never settled")


async def test_same_batch_twice_changes_nothing(pool: asyncpg.Pool) -> None:
    store = AsyncEventStore(pool)
    volume = new_volume()
    volume.complete_create("h@b#p")
    volume.request_extend(2, in_use_allowed=False, reservation_id="r1")
    first = await store.save(volume, meta={})
    batch = await events_of(pool, volume, Position(first.tx_id - 1, 0))
    assert [r.originator_version for r in batch] == [1, 2, 3]
    projector = Projector(pool, name=f"test-{uuid.uuid4().hex}")
    assert await projector.project(batch) == 3
    once = await volume_row(pool, volume.id)
    assert (once["status"], once["size"], once["version"]) == ("extending", 1, 3)
    assert await projector.project(batch) == 0  # tracking: the whole batch is behind it
    assert await volume_row(pool, volume.id) == once
    other = Projector(pool, name=f"test-{uuid.uuid4().hex}")  # no tracking: row versions
    await other.project(batch)
    assert await volume_row(pool, volume.id) == once


async def test_later_events_still_apply_after_a_replayed_batch(pool: asyncpg.Pool) -> None:
    store = AsyncEventStore(pool)
    volume = new_volume()
    volume.complete_create("h@b#p")
    first = await store.save(volume, meta={})
    since = Position(first.tx_id - 1, 0)
    projector = Projector(pool, name=f"test-{uuid.uuid4().hex}")
    await projector.project(await events_of(pool, volume, since))
    volume.set_bootable(True)
    await store.save(volume, meta={})
    replay = Projector(pool, name=f"test-{uuid.uuid4().hex}")
    await replay.project(await events_of(pool, volume, since))  # old and new events together
    row = await volume_row(pool, volume.id)
    assert (row["bootable"], row["version"], row["status"]) == (True, 3, "available")
