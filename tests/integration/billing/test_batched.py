"""Billing writes a batch's ledger changes in one transaction, from the envelopes alone,
over real PostgreSQL and JetStream (the notification stream). Batches go through the bus's
own batch sequence (``before``, each message through the gate and the handler, ``after``,
then the acks) with messages that record how they were settled: several volumes' events
land in one transaction and read nothing from the event store; a batch redelivered after a
crash before its acks changes nothing; a step that does not follow the ledger (an earlier
write lost) refolds the volume from the store; a volume whose ledger row PostgreSQL refuses
does not hold back the others in its batch, and is retried, then parked and quarantined."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import asyncpg
import nats
import nats.errors
import pytest
import pytest_asyncio

from cinderblock.billing.run import Billing, Publisher, notification_stream
from cinderblock.bus.jetstream import _handle_batch, ensure_stream
from cinderblock.domain.volume import Volume
from cinderblock.relay.run import Relay
from cinderblock.runtime.infra import create_schemas
from cinderblock.store.eventstore import AsyncEventStore, RecordedEvent
from cinderblock.usage.ledger import volume_intervals
from cinderblock.usage.store import EventReader
from tests.helpers.events import new_volume
from tests.helpers.servers import Servers, fresh_database, make_settings

pytestmark = pytest.mark.integration


class FakeMsg:
    """A JetStream message as the consumer loop settles it (once, as nats-py allows)."""

    def __init__(self, subject: str, data: bytes, deliveries: int = 1) -> None:
        self.subject = subject
        self.data = data
        self.metadata = SimpleNamespace(num_delivered=deliveries)
        self.settled: str | None = None

    def again(self) -> FakeMsg:
        """The same message delivered once more."""
        return FakeMsg(self.subject, self.data, self.metadata.num_delivered + 1)

    async def _settle(self, how: str) -> None:
        if self.settled is not None:
            raise nats.errors.MsgAlreadyAckdError(self)
        self.settled = how

    async def ack(self) -> None:
        await self._settle("ack")

    async def nak(self, delay: float | None = None) -> None:
        await self._settle("nak")

    async def term(self) -> None:
        await self._settle("term")

    async def in_progress(self) -> None:
        pass


class CountingReader(EventReader):
    """Counts the aggregates whose events are read from the event store."""

    reads = 0

    async def events_of(self, conn: Any, aggregate_id: uuid.UUID, upto: int) -> list[Any]:
        if len(self._cache.get(aggregate_id, [])) < upto:
            self.reads += 1
        return await super().events_of(conn, aggregate_id, upto)

    async def read_ahead(self, conn: Any, wanted: Mapping[uuid.UUID, int]) -> None:
        self.reads += len(wanted)
        await super().read_ahead(conn, wanted)


@dataclasses.dataclass
class Setup:
    pool: asyncpg.Pool
    store: AsyncEventStore
    relay: Relay
    js: Any
    settings: Any
    notes: list[dict[str, Any]]
    arrived: asyncio.Event

    def billing(self) -> Billing:
        """A billing process (a fresh one each call: what a restart gives)."""
        billing = Billing(self.settings, self.pool, Publisher(self.settings, self.js))
        billing.reader = CountingReader(cache_size=100)
        billing.spec = dataclasses.replace(billing.spec, max_deliver=2)
        return billing

    async def messages(self, volumes: Sequence[Volume], since: int = 0) -> list[FakeMsg]:
        """The envelopes the relay publishes for the volumes' events above ``since``, in
        log order (read from the table: another database's running transaction may hold
        back what the relay's settled read sees, the server's transaction ids are shared)."""
        rows = await self.pool.fetch(
            "SELECT position, tx_id::text::bigint AS tx_id, originator_id, originator_version, "
            "topic, state, meta, recorded_at FROM events "
            "WHERE originator_id = ANY($1::uuid[]) AND originator_version > $2 ORDER BY position",
            [v.id for v in volumes],
            since,
        )
        records = [RecordedEvent(**{**dict(r), "meta": json.loads(r["meta"])}) for r in rows]
        out = [self.relay.message(r) for r in records]
        return [FakeMsg(m.subject, m.payload) for m in out]

    async def ledger(self, volume: Volume) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT *, xmin::text AS tx FROM billing_intervals WHERE volume_id = $1 "
            "ORDER BY start_version",
            volume.id,
        )
        return [dict(r) for r in rows]

    async def version(self, volume: Volume) -> int | None:
        found: int | None = await self.pool.fetchval(
            "SELECT version FROM billing_volumes WHERE volume_id = $1", volume.id
        )
        return found

    async def folded(self, volume: Volume) -> list[tuple[Any, ...]]:
        """The volume's ledger as the full fold of its stored events gives it."""
        events = await EventReader().events_of(self.pool, volume.id, 10_000)
        return [
            (i.start_version, i.size_gb, i.usage_class.value, i.started_at, i.ended_at)
            for i in volume_intervals(str(volume.id), events)
        ]

    async def written(self, volume: Volume) -> list[tuple[Any, ...]]:
        return [
            (r["start_version"], r["size_gb"], r["usage_class"], r["started_at"], r["ended_at"])
            for r in await self.ledger(volume)
        ]

    async def notified(self, count: int) -> list[dict[str, Any]]:
        """Wait for ``count`` notifications in all (those published so far, in order)."""
        async with asyncio.timeout(10):
            while len(self.notes) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.notes


async def deliver(billing: Billing, msgs: Sequence[FakeMsg]) -> None:
    """One batch through the consumer loop's own sequence."""
    await _handle_batch(
        msgs,  # type: ignore[arg-type]
        billing.spec,
        billing.handle,
        billing.park,
        billing,
        billing.gate,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def setup(servers: Servers, data_dir) -> AsyncIterator[Setup]:  # type: ignore[no-untyped-def]
    async with fresh_database(servers) as dsn:
        settings = make_settings(dsn, servers.nats_url, f"BB{uuid.uuid4().hex[:8]}", data_dir)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=6)
        await create_schemas(pool)
        nc = await nats.connect(servers.nats_url)
        js = nc.jetstream()
        await ensure_stream(js, notification_stream(settings))
        notes: list[dict[str, Any]] = []
        arrived = asyncio.Event()

        async def on_note(msg: Any) -> None:
            notes.append(json.loads(msg.data))
            arrived.set()

        await nc.subscribe(settings.subject("notifications.>"), cb=on_note)
        try:
            relay = Relay(settings, pool, js)
            yield Setup(pool, AsyncEventStore(pool), relay, js, settings, notes, arrived)
        finally:
            with contextlib.suppress(Exception):
                await js.delete_stream(notification_stream(settings).name)
            await nc.close()
            await pool.close()


async def _created(setup: Setup, project: str = "p") -> Volume:
    volume = new_volume(project)
    await setup.store.save(volume, meta={})
    volume.complete_create("node@file-a#pool0")
    await setup.store.save(volume, meta={})
    return volume


async def _extended(setup: Setup, volume: Volume, size: int) -> None:
    volume.request_extend(size, in_use_allowed=False, reservation_id=uuid.uuid4().hex)
    await setup.store.save(volume, meta={})
    volume.complete_extend(volume.version)
    await setup.store.save(volume, meta={})


async def _transactions(setup: Setup, volumes: Sequence[Volume]) -> set[str]:
    """The transactions that last wrote the volumes' ledger rows."""
    ids = [v.id for v in volumes]
    rows = await setup.pool.fetch(
        "SELECT xmin::text AS tx FROM billing_volumes WHERE volume_id = ANY($1::uuid[]) "
        "UNION SELECT xmin::text FROM billing_intervals WHERE volume_id = ANY($1::uuid[]) "
        "AND ended_at IS NULL",
        ids,
    )
    return {r["tx"] for r in rows}


async def test_a_batch_of_several_volumes_lands_in_one_transaction_without_store_reads(
    setup: Setup,
) -> None:
    volumes = [await _created(setup) for _ in range(3)]
    billing = setup.billing()
    first = await setup.messages(volumes)
    assert len(first) == 6
    await deliver(billing, first)
    assert [m.settled for m in first] == ["ack"] * 6
    assert [await setup.version(v) for v in volumes] == [2, 2, 2]
    assert len(await _transactions(setup, volumes)) == 1
    for v in volumes:
        assert await setup.written(v) == await setup.folded(v)
    assert billing.reader.reads == 0  # type: ignore[attr-defined]  # envelopes only

    # The next events of the same volumes: one more transaction, still no read.
    for size, v in zip((2, 3, 4), volumes, strict=True):
        await _extended(setup, v, size)
    second = await setup.messages(volumes, since=2)
    assert len(second) == 6
    await deliver(billing, second)
    assert [m.settled for m in second] == ["ack"] * 6
    assert [await setup.version(v) for v in volumes] == [4, 4, 4]
    assert len(await _transactions(setup, volumes)) == 1
    for v in volumes:
        assert await setup.written(v) == await setup.folded(v)
        assert [r["size_gb"] for r in await setup.ledger(v)] == [1, 1, v.size_gb]
    assert billing.reader.reads == 0  # type: ignore[attr-defined]


async def test_a_batch_redelivered_after_a_crash_before_its_acks_changes_nothing(
    setup: Setup,
) -> None:
    volumes = [await _created(setup) for _ in range(2)]
    for v in volumes:
        await _extended(setup, v, 5)
    msgs = await setup.messages(volumes)
    seen = len(setup.notes)
    await deliver(setup.billing(), msgs)
    before = [await setup.ledger(v) for v in volumes]  # xmin included: no row rewritten
    published = await setup.notified(seen + 8)  # create x2, resize x2, per volume
    ids = [n["message_id"] for n in published[seen:]]

    # The process died before acking: a fresh one gets the batch again.
    restarted = setup.billing()
    again = [m.again() for m in msgs]
    await deliver(restarted, again)
    assert [m.settled for m in again] == ["ack"] * len(again)
    assert [await setup.ledger(v) for v in volumes] == before
    # ... and the same process gets it again (its kept folds are ahead of the batch).
    again = [m.again() for m in again]
    await deliver(restarted, again)
    assert [await setup.ledger(v) for v in volumes] == before
    # The notifications went out again with the same ids (JetStream drops the copies).
    republished = await setup.notified(seen + 3 * len(ids))
    assert sorted(n["message_id"] for n in republished[seen + len(ids) :]) == sorted(ids * 2)


async def test_a_step_that_does_not_follow_the_ledger_refolds_the_volume(setup: Setup) -> None:
    volume = await _created(setup)
    billing = setup.billing()
    await deliver(billing, await setup.messages([volume]))
    # The ledger lost the volume (a write that never landed) while the fold is kept.
    await setup.pool.execute("DELETE FROM billing_intervals WHERE volume_id = $1", volume.id)
    await setup.pool.execute(
        "UPDATE billing_volumes SET version = 1 WHERE volume_id = $1", volume.id
    )
    await _extended(setup, volume, 7)
    await deliver(billing, await setup.messages([volume], since=2))
    assert await setup.version(volume) == 4
    assert await setup.written(volume) == await setup.folded(volume)


async def test_a_ledger_row_postgresql_refuses_does_not_hold_back_the_batch(
    setup: Setup,
) -> None:
    good = [await _created(setup) for _ in range(2)]
    poison = await _created(setup, project="p\x00nul")  # text cannot hold NUL
    billing = setup.billing()
    seen = len(setup.notes)
    msgs = await setup.messages([good[0], poison, good[1]])
    await deliver(billing, msgs)
    by_volume = {v.id: [m for m in msgs if str(v.id) in m.subject] for v in (*good, poison)}
    assert [m.settled for v in good for m in by_volume[v.id]] == ["ack"] * 4
    assert [m.settled for m in by_volume[poison.id]] == ["nak", "nak"]  # retried
    assert [await setup.version(v) for v in good] == [2, 2]
    assert await setup.version(poison) is None
    for v in good:
        assert await setup.written(v) == await setup.folded(v)
    published = await setup.notified(seen + 4)
    assert {n["payload"]["volume_id"] for n in published[seen:]} == {str(v.id) for v in good}

    # The last delivery fails the same way, beside a good volume's new events: the good
    # ones land, the poison volume's messages are parked and the volume quarantined.
    await _extended(setup, good[0], 9)
    last = [m.again() for m in by_volume[poison.id]] + await setup.messages([good[0]], since=2)
    await deliver(billing, last)
    assert [m.settled for m in last] == ["term", "term", "ack", "ack"]
    assert await setup.version(good[0]) == 4
    assert await setup.written(good[0]) == await setup.folded(good[0])
    durable = billing.spec.durable
    rows = await setup.pool.fetch(
        "SELECT version, held, error FROM quarantine WHERE consumer = $1 AND aggregate_id = $2 "
        "ORDER BY version",
        durable,
        poison.id,
    )
    assert [(r["version"], r["held"]) for r in rows] == [(1, False), (2, True)]
    assert "CharacterNotInRepertoire" in rows[0]["error"]
    letters = await setup.pool.fetch("SELECT msg_id FROM dead_letters WHERE consumer = $1", durable)
    assert {f"{poison.id}:1", f"{poison.id}:2"} <= {r["msg_id"] for r in letters}

    # Its later events are held by the gate, unhandled; billing goes on for the others.
    poison.set_bootable(True)
    await setup.store.save(poison, meta={})
    held = await setup.messages([poison], since=2)
    await deliver(billing, held + await setup.messages([good[1]], since=2))
    assert [m.settled for m in held] == ["ack"]
    assert await setup.pool.fetchval(
        "SELECT held FROM quarantine WHERE consumer = $1 AND aggregate_id = $2 AND version = 3",
        durable,
        poison.id,
    )
    assert await setup.version(poison) is None
