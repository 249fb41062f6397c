"""One contract for every event store (as eventsourcing tests its recorders: an abstract
test class, a concrete subclass per implementation): what `Volumes`, the sagas and the
consumers rely on. Subclasses: tests/unit/store/test_memory_store.py (in memory) and
tests/integration/test_store_contract.py (asyncpg on PostgreSQL, a process alone and two
stores sharing one process's writer).

A subclass gives a ``store`` fixture and says how to reach the same log as another
process (`other`) and how to read settled rows (`settled`).
"""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod

import pytest

from cinderblock.domain.quota import ProjectQuota
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.store.eventstore import (
    START,
    ConcurrencyConflictError,
    EventStore,
    Position,
    RecordedEvent,
)
from tests.helpers.events import FIELDS, new_volume


class EventStoreContract(ABC):
    """Append and load, optimistic concurrency, positions, decoding."""

    @abstractmethod
    def other(self, store: EventStore) -> EventStore:
        """A store on the same log, as another process would open it."""

    @abstractmethod
    async def settled(self, store: EventStore, after: Position, limit: int) -> list[RecordedEvent]:
        """Settled rows after ``after``, in consumer order, at most ``limit``."""

    async def mine(
        self, store: EventStore, after: Position, ids: set[uuid.UUID], upto: Position
    ) -> list[RecordedEvent]:
        """The settled rows after ``after`` of the aggregates ``ids`` (other tests may be
        writing the same log), once the log is settled up to ``upto``."""
        return [r for r in await self.until_settled(store, after, upto) if r.originator_id in ids]

    async def until_settled(
        self, store: EventStore, after: Position, upto: Position, *, timeout: float = 10.0
    ) -> list[RecordedEvent]:
        """Every settled row after ``after``, read once rows up to ``upto`` are settled (on
        PostgreSQL, any older transaction still running in the cluster holds them back)."""
        async with asyncio.timeout(timeout):
            while True:
                rows = await self.settled(store, after, 10_000)
                if rows and rows[-1].at >= upto:
                    return rows
                await asyncio.sleep(0.01)

    # ------------------------------------------------------------ append and load

    async def test_is_an_event_store(self, store: EventStore) -> None:
        assert isinstance(store, EventStore)

    async def test_a_saved_aggregate_loads_as_it_was_saved(self, store: EventStore) -> None:
        volume = new_volume()
        volume.complete_create("h@b#p")
        volume.set_bootable(True)
        at = await store.save(volume, meta={"request_id": "req-1"})
        assert at.position > 0
        for reader in (store, self.other(store)):  # warm and cold
            loaded = await reader.load(volume.id, Volume)
            assert loaded is not None
            assert (loaded.version, loaded.status, loaded.bootable, loaded.host) == (
                3,
                Status.AVAILABLE,
                True,
                "h@b#p",
            )
            assert (loaded.project_id, loaded.size_gb) == ("p", 1)

    async def test_loads_are_private_copies(self, store: EventStore) -> None:
        volume = new_volume()
        volume.complete_create("h@b#p")
        await store.save(volume, meta={})
        first = await store.load(volume.id, Volume)
        assert first is not None
        first.set_bootable(True)  # changed, never saved
        second = await store.load(volume.id, Volume)
        assert second is not None
        assert (second.version, second.bootable) == (2, False)
        assert second is not first

    async def test_an_unknown_id_or_another_class_loads_nothing(self, store: EventStore) -> None:
        assert await store.load(uuid.uuid4(), Volume) is None
        quota = ProjectQuota.start(uuid.uuid4().hex)
        await store.save(quota, meta={})
        assert await store.load(quota.id, Volume) is None
        assert await store.load(quota.id, ProjectQuota) is not None

    async def test_saving_nothing_new_appends_nothing(self, store: EventStore) -> None:
        mark = await store.save(new_volume(), meta={})
        volume = new_volume()
        at = await store.save(volume, meta={})
        assert await store.save(volume, meta={}) == START
        assert await store.save(meta={}) == START
        later = await store.save(new_volume(), meta={})
        rows = await self.mine(store, mark, {volume.id}, later)
        assert [r.originator_version for r in rows] == [1]
        assert mark < at < later

    async def test_forgetting_keeps_what_was_committed(self, store: EventStore) -> None:
        volume = new_volume()
        volume.complete_create("h@b#p")
        await store.save(volume, meta={})
        store.forget(volume.id)
        loaded = await store.load(volume.id, Volume)
        assert loaded is not None
        assert (loaded.version, loaded.host) == (2, "h@b#p")

    # ------------------------------------------------------------ optimistic concurrency

    async def test_a_stale_save_conflicts_and_appends_nothing(self, store: EventStore) -> None:
        """The shape of every command: quota and volume in one append; a quota that moved
        on since the load refuses the whole append, the volume's events included."""
        other = self.other(store)
        project = uuid.uuid4().hex
        await store.save(ProjectQuota.start(project), meta={})
        quota_id = ProjectQuota.start(project).id
        stale = await other.load(quota_id, ProjectQuota)
        fresh = await store.load(quota_id, ProjectQuota)
        assert stale is not None
        assert fresh is not None
        fresh.release_usage({"volumes": 1}, reason="x")
        await store.save(fresh, meta={})
        volume = new_volume(project)
        stale.consume({"volumes": 1}, {"volumes": 10}, size_gb=1, reason="y")
        with pytest.raises(ConcurrencyConflictError):
            await other.save(volume, stale, meta={})
        assert await store.load(volume.id, Volume) is None
        assert await other.load(volume.id, Volume) is None
        now = await other.load(quota_id, ProjectQuota)
        assert now is not None
        assert (now.version, now.usage("volumes")) == (2, -1)

    async def test_creating_an_existing_id_conflicts(self, store: EventStore) -> None:
        """A repeated create (same volume id) never overwrites the first one."""
        vid = uuid.uuid4()
        await store.save(Volume.create(vid, project_id="p", **FIELDS), meta={})
        again = Volume.create(vid, project_id="p", **{**FIELDS, "name": "second"})
        with pytest.raises(ConcurrencyConflictError):
            await self.other(store).save(again, meta={})
        loaded = await store.load(vid, Volume)
        assert loaded is not None
        assert (loaded.version, loaded.name) == (1, "n")

    async def test_of_two_racing_saves_one_wins_and_the_loser_retries(
        self, store: EventStore
    ) -> None:
        other = self.other(store)
        volume = new_volume()
        await store.save(volume, meta={})
        one = await store.load(volume.id, Volume)
        two = await other.load(volume.id, Volume)
        assert one is not None
        assert two is not None
        one.complete_create("h@b#one")
        two.complete_create("h@b#two")
        results = await asyncio.gather(
            store.save(one, meta={}), other.save(two, meta={}), return_exceptions=True
        )
        lost = [r for r in results if isinstance(r, ConcurrencyConflictError)]
        won = [r for r in results if isinstance(r, Position)]
        assert (len(lost), len(won)) == (1, 1), results
        loser = other if isinstance(results[1], ConcurrencyConflictError) else store
        retry = await loser.load(volume.id, Volume)
        assert retry is not None
        assert retry.status == Status.AVAILABLE
        retry.set_bootable(True)  # the retried command decides on the new state
        await loser.save(retry, meta={})
        final = await store.load(volume.id, Volume)
        assert final is not None
        assert (final.version, final.bootable) == (3, True)
        assert final.host in {"h@b#one", "h@b#two"}

    # ------------------------------------------------------------ positions and rows

    async def test_positions_grow_in_save_order(self, store: EventStore) -> None:
        volume = new_volume()
        first = await store.save(volume, meta={})
        second = await store.save(new_volume(), meta={})
        volume.complete_create("h@b#p")
        third = await store.save(volume, meta={})
        assert first < second < third
        assert first.position < second.position < third.position

    async def test_one_save_is_one_transaction_in_order(self, store: EventStore) -> None:
        mark = await store.save(new_volume(), meta={})
        project = uuid.uuid4().hex
        quota = ProjectQuota.start(project)
        quota.consume({"volumes": 1}, {"volumes": 10}, size_gb=1, reason="create")
        volume = new_volume(project)
        volume.complete_create("h@b#p")
        at = await store.save(volume, quota, meta={})
        rows = await self.mine(store, mark, {volume.id, quota.id}, at)
        assert len(rows) == 4
        assert {r.tx_id for r in rows} == {at.tx_id}
        assert [r.position for r in rows] == sorted(r.position for r in rows)
        assert rows[-1].at == at
        assert [r.originator_version for r in rows if r.originator_id == volume.id] == [1, 2]
        assert [r.originator_version for r in rows if r.originator_id == quota.id] == [1, 2]

    async def test_settled_reads_page_through_in_consumer_order(self, store: EventStore) -> None:
        mark = await store.save(new_volume(), meta={})
        volumes = [new_volume() for _ in range(5)]
        for volume in volumes:
            last = await store.save(volume, meta={})
        await self.until_settled(store, mark, last)
        ids = {v.id for v in volumes}
        seen: list[RecordedEvent] = []
        after = mark
        while True:
            page = await self.settled(store, after, 2)
            if not page:
                break
            assert len(page) <= 2
            seen.extend(r for r in page if r.originator_id in ids)
            after = page[-1].at
        assert [r.originator_id for r in seen] == [v.id for v in volumes]
        assert [r.at for r in seen] == sorted(r.at for r in seen)

    async def test_rows_decode_to_the_saved_events_with_their_meta(self, store: EventStore) -> None:
        volume = new_volume()
        volume.complete_create("h@b#p")
        volume.set_bootable(True)
        meta = {"request_id": "req-9", "actor": "user:u", "causation_id": None}
        mark = await store.save(new_volume(), meta={})
        at = await store.save(volume, meta=meta)
        rows = await self.mine(store, mark, {volume.id}, at)
        events = [store.decode(r) for r in rows]
        assert [type(e).__qualname__ for e in events] == [
            "Volume.Created",
            "Volume.CreateCompleted",
            "Volume.BootableSet",
        ]
        assert [e.originator_version for e in events] == [1, 2, 3]
        assert {e.originator_id for e in events} == {volume.id}
        assert events[2].bootable is True
        assert rows[0].topic == "cinderblock.domain.volume:Volume.Created"
        assert all(r.meta == meta for r in rows)
