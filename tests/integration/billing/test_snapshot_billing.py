"""Snapshots through the billing consumer over real PostgreSQL and JetStream: their
intervals are in the live ledger (GiB·hours of the fold of their events, apart from their
volume's), their notifications land with Cinder's names, a redelivery changes nothing, and
the ledger replay rebuilds equals the live one, snapshots included."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from cinderblock.billing.run import Billing, Publisher, consumer_spec, notification_stream
from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.volume import Volume
from cinderblock.relay.run import Relay
from cinderblock.replay.rebuild import replay
from cinderblock.store.eventstore import START, read_settled
from cinderblock.usage.ledger import gib_hours, volume_intervals
from cinderblock.usage.store import EventReader, usage
from tests.helpers.events import new_volume
from tests.helpers.rigs import BillingRig, open_billing_rig
from tests.helpers.servers import Servers

pytestmark = pytest.mark.integration

LEDGER = "SELECT * FROM billing_intervals WHERE volume_id = ANY($1::uuid[]) ORDER BY 1, 2"
VERSIONS = "SELECT volume_id, version FROM billing_volumes WHERE volume_id = ANY($1::uuid[])"


@pytest_asyncio.fixture(loop_scope="session")
async def rig(servers: Servers, data_dir) -> AsyncIterator[BillingRig]:  # type: ignore[no-untyped-def]
    async with open_billing_rig(servers, data_dir) as r:
        yield r


async def _until(rig: BillingRig, wanted: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """Notifications until every (event type, snapshot id) of ``wanted`` was seen."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while wanted:
            note = await rig.notes.get()
            seen.append(note)
            wanted.discard((note["event_type"], note["payload"].get("snapshot_id", "")))
    return seen


async def _snapshots(rig: BillingRig, project: str) -> tuple[Volume, Snapshot, Snapshot]:
    """A volume of 3 GiB; one snapshot taken, renamed, deleted; another left available."""
    store = rig.store
    volume = new_volume(
        project,
        user_id="u1",
        name="billed",
        size_gb=3,
        volume_type_id="type-a",
        volume_type_name="a",
    )
    await store.save(volume, meta={})
    volume.complete_create("node@file-a#pool0")
    await store.save(volume, meta={})
    taken = []
    for name in ("gone", "kept"):
        snap = Snapshot.take(
            uuid.uuid4(),
            volume_id=volume.vid,
            project_id=project,
            user_id="u1",
            name=name,
            description=None,
            volume_size=volume.size_gb,
            metadata={},
            volume_type_name="a",
            volume_type_id="type-a",
            availability_zone="nova",
        )
        await store.save(snap, meta={"request_id": "req-1"})
        snap.complete_create()
        await store.save(snap, meta={})
        taken.append(snap)
    gone, kept = taken
    for step in (
        lambda s: s.update({"name": "renamed"}),
        lambda s: s.request_delete(),
        lambda s: s.complete_delete(),
    ):
        step(gone)
        await store.save(gone, meta={})
    return volume, gone, kept


def _by_resource(rows: list[Any]) -> dict[tuple[str, str | None, str], Any]:
    return {(r.resource, r.snapshot_id, r.volume_id): (r.hours, r.gib_hours) for r in rows}


async def test_snapshots_in_the_ledger_notified_idempotent_and_rebuilt(rig: BillingRig) -> None:
    project = uuid.uuid4().hex
    volume, gone, kept = await _snapshots(rig, project)
    notes = await _until(
        rig,
        {
            ("snapshot.delete.end", gone.sid),
            ("snapshot.update.end", gone.sid),
            ("snapshot.create.end", kept.sid),
        },
    )
    ours = [n for n in notes if n["payload"].get("snapshot_id") in (gone.sid, kept.sid)]
    assert {n["event_type"] for n in ours} >= {
        "snapshot.create.start",
        "snapshot.create.end",
        "snapshot.update.start",
        "snapshot.delete.start",
        "snapshot.delete.end",
    }
    for n in ours:
        assert n["payload"]["availability_zone"] == "nova"
        assert n["payload"]["volume_id"] == volume.vid
    ids = [volume.id, gone.id, kept.id]

    # Billing commits a batch's ledger before it publishes the batch's notifications.
    versions = dict(await rig.pool.fetch(VERSIONS, ids))
    assert versions == {volume.id: volume.version, gone.id: gone.version, kept.id: 2}

    since = datetime.now(UTC) - timedelta(hours=1)
    until = datetime.now(UTC) + timedelta(hours=1)
    live = await usage(rig.pool, project_id=project, since=since, until=until, as_of=until)
    snapshots = sorted([("snapshot", gone.sid), ("snapshot", kept.sid)])
    assert [(r.resource, r.snapshot_id) for r in live] == [("volume", None), *snapshots]
    reader = EventReader()
    for aggregate in (volume, gone, kept):
        events = await reader.events_of(rig.pool, aggregate.id, aggregate.version)
        expected = gib_hours(volume_intervals(str(aggregate.id), events), since, until)
        got = [r.gib_hours for r in live if (r.snapshot_id or r.volume_id) == str(aggregate.id)]
        assert len(got) == 1
        assert abs(got[0] - expected) < 1e-9
    assert all(r.volume_id == volume.vid and r.volume_type_id == "type-a" for r in live)

    # Every snapshot event redelivered, last first: the ledger and the notification stream
    # stay as they are (the same message ids).
    before = [dict(r) for r in await rig.pool.fetch(LEDGER, ids)]
    js = rig.nc.jetstream()
    stream = notification_stream(rig.settings).name
    count = (await js.stream_info(stream)).state.messages
    async with rig.pool.acquire() as conn:
        records = [
            r
            for r in await read_settled(conn, START, 100_000)
            if r.originator_id in (gone.id, kept.id)
        ]
    relay = Relay(rig.settings, rig.pool, js)
    billing = Billing(rig.settings, rig.pool, Publisher(rig.settings, js))

    @dataclass
    class Redelivered:
        data: bytes

    for record in reversed(records):
        await billing.handle(Redelivered(relay.message(record).payload))  # type: ignore[arg-type]
    assert [dict(r) for r in await rig.pool.fetch(LEDGER, ids)] == before
    assert (await js.stream_info(stream)).state.messages == count

    # Replay's ledger equals the live one, snapshots included.
    done = await replay(rig.settings.database_url, (), ledger=consumer_spec(rig.settings).durable)
    assert done.ledger is not None
    rebuilt = await usage(rig.pool, project_id=project, since=since, until=until, as_of=until)
    assert _by_resource(rebuilt) == _by_resource(live)
    assert [dict(r) for r in await rig.pool.fetch(LEDGER, ids)] == before
