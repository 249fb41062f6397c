"""The billing consumer over real PostgreSQL and JetStream: its ledger equals the one
rebuilt from the event table, redelivery changes nothing (ledger rows, notification ids),
and notifications land on the notification stream with Cinder's names."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from cinderblock.billing.run import Billing, Publisher, consumer_spec, notification_stream
from cinderblock.cli.main import main
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


@pytest_asyncio.fixture(loop_scope="session")
async def rig(servers: Servers, data_dir) -> AsyncIterator[BillingRig]:  # type: ignore[no-untyped-def]
    async with open_billing_rig(servers, data_dir) as r:
        yield r


async def _until_notified(rig: BillingRig, event_type: str, volume_id: uuid.UUID) -> list[dict]:  # type: ignore[type-arg]
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while True:
            note = await rig.notes.get()
            seen.append(note)
            if note["event_type"] == event_type and note["payload"].get("volume_id") == str(
                volume_id
            ):
                return seen


async def _life(rig: BillingRig, project: str) -> Volume:
    """create, place, extend 1→3, retype, error, delete: each step its own save."""
    store = rig.store
    volume = new_volume(
        project,
        user_id="u1",
        name="billed",
        size_gb=1,
        volume_type_id="type-a",
        volume_type_name="a",
    )
    await store.save(volume, meta={"request_id": "req-1"})
    steps = [
        lambda v: v.complete_create("node@file-a#pool0"),
        lambda v: v.request_extend(3, in_use_allowed=False, reservation_id="r1"),
        lambda v: v.complete_extend(v.version),
        lambda v: v.request_retype(
            "type-b", "b", new_multiattach=False, migration_policy="never", reservation_id="r2"
        ),
        lambda v: v.complete_retype(v.version, None),
        lambda v: v.reset_status(
            status="error", attach_status=None, migration_status=None, migration_given=False
        ),
        lambda v: v.request_delete(),
        lambda v: v.complete_delete(),
    ]
    for step in steps:
        step(volume)
        await store.save(volume, meta={"request_id": "req-2"})
    return volume


def _totals(rows: list[Any]) -> dict[tuple[str, str], Any]:
    return {(r.volume_id, r.volume_type_id): (r.hours, r.gib_hours) for r in rows}


async def test_consumer_ledger_equals_the_rebuilt_one_and_the_fold(rig: BillingRig) -> None:
    project = uuid.uuid4().hex
    volumes = [await _life(rig, project) for _ in range(3)]
    for v in volumes:
        await _until_notified(rig, "volume.delete.end", v.id)

    since = datetime.now(UTC) - timedelta(hours=1)
    until = datetime.now(UTC) + timedelta(hours=1)
    live = await usage(rig.pool, project_id=project, since=since, until=until, as_of=until)
    assert {r.volume_type_id for r in live} == {"type-a", "type-b"}
    assert all(r.gib_hours > 0 for r in live)

    reader = EventReader()
    for v in volumes:
        events = await reader.events_of(rig.pool, v.id, v.version)
        expected = gib_hours(volume_intervals(str(v.id), events), since, until)
        got = sum(r.gib_hours for r in live if r.volume_id == str(v.id))
        assert abs(got - expected) < 1e-9

    done = await replay(rig.settings.database_url, (), ledger=consumer_spec(rig.settings).durable)
    assert done.ledger is not None
    assert done.ledger.volumes == len(volumes)
    rebuilt = await usage(rig.pool, project_id=project, since=since, until=until, as_of=until)
    assert _totals(rebuilt) == _totals(live)


async def test_redelivery_changes_nothing_and_republishes_the_same_ids(rig: BillingRig) -> None:
    project = uuid.uuid4().hex
    volume = await _life(rig, project)
    # Notifications are not ordered (several workers): wait for all nine, not for the last.
    ids: set[str] = set()
    async with asyncio.timeout(20):
        while len(ids) < 9:  # create x2, resize x2, retype, reset_status x2, delete x2
            note = await rig.notes.get()
            if note["payload"].get("volume_id") == str(volume.id):
                ids.add(note["message_id"])

    rows = "SELECT * FROM billing_intervals WHERE volume_id = $1 ORDER BY start_version"
    before = [dict(r) for r in await rig.pool.fetch(rows, volume.id)]
    js = rig.nc.jetstream()
    stream = notification_stream(rig.settings).name
    # A subscriber can see a published notification a moment before the stream has stored
    # it: wait until the stream (this test's own) holds all nine.
    async with asyncio.timeout(10):
        while True:
            count_before = (await js.stream_info(stream)).state.messages
            if count_before >= len(ids):
                break
            await asyncio.sleep(0.01)
    assert count_before == len(ids)

    # Redeliver every event of the volume, last first (the first one fills every gap).
    async with rig.pool.acquire() as conn:
        records = [
            r for r in await read_settled(conn, START, 10_000) if r.originator_id == volume.id
        ]
    relay = Relay(rig.settings, rig.pool, js)
    billing = Billing(rig.settings, rig.pool, Publisher(rig.settings, js))

    @dataclass
    class Redelivered:
        data: bytes

    for record in reversed(records):
        await billing.handle(Redelivered(relay.message(record).payload))  # type: ignore[arg-type]

    assert [dict(r) for r in await rig.pool.fetch(rows, volume.id)] == before
    assert (await js.stream_info(stream)).state.messages == count_before

    # A ledger that lost the volume is rebuilt whole from its last event alone.
    await rig.pool.execute("DELETE FROM billing_intervals WHERE volume_id = $1", volume.id)
    await rig.pool.execute("DELETE FROM billing_volumes WHERE volume_id = $1", volume.id)
    await billing.handle(Redelivered(relay.message(records[-1]).payload))  # type: ignore[arg-type]
    assert [dict(r) for r in await rig.pool.fetch(rows, volume.id)] == before


async def test_notifications_are_oslo_messages_on_bridgeable_subjects(rig: BillingRig) -> None:
    volume = await _life(rig, uuid.uuid4().hex)
    await _until_notified(rig, "volume.delete.end", volume.id)
    js = rig.nc.jetstream()
    sub = await js.subscribe(
        rig.settings.subject("notifications.info.volume.resize.end"),
        stream=notification_stream(rig.settings).name,
        ordered_consumer=True,
    )
    try:
        async with asyncio.timeout(10):
            while True:
                msg = await sub.next_msg(timeout=5)
                body = json.loads(msg.data)
                if body["payload"]["volume_id"] == str(volume.id):
                    break
    finally:
        await sub.unsubscribe()
    assert set(body) == {
        "message_id",
        "publisher_id",
        "event_type",
        "priority",
        "payload",
        "timestamp",
    }
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == body["message_id"]
    assert body["publisher_id"] == "volume.node@file-a"
    assert body["priority"] == "INFO"
    assert body["payload"]["size"] == 3
    assert body["payload"]["volume_type"] == "type-a"


async def test_events_of_other_aggregates_are_acknowledged_and_ignored(rig: BillingRig) -> None:
    """A NATS server before 2.10 ignores filter_subjects: quota and type events reach the
    consumer there, and must pass through without a retry."""
    from cinderblock.wire.envelope import EventEnvelope

    js = rig.nc.jetstream()
    billing = Billing(rig.settings, rig.pool, Publisher(rig.settings, js))
    quota = uuid.uuid4()
    envelope = EventEnvelope(
        id=f"{quota}:1",
        type="quota.created",
        aggregate="quota",
        aggregate_id=str(quota),
        version=1,
        position=1,
        occurred_at=datetime.now(UTC),
        data={"project_id": "p"},
    )

    @dataclass
    class Delivered:
        data: bytes

    await billing.handle(Delivered(envelope.model_dump_json().encode()))  # type: ignore[arg-type]
    assert (
        await rig.pool.fetchval("SELECT count(*) FROM billing_volumes WHERE volume_id = $1", quota)
        == 0
    )


async def test_cinderblock_replay_rebuilds_the_ledger_with_the_same_totals(
    rig: BillingRig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cinderblock replay --projection billing`: a lost ledger comes back from the log,
    the same GiB·hours as the live consumer had."""
    project = uuid.uuid4().hex
    volumes = [await _life(rig, project) for _ in range(2)]
    for v in volumes:
        await _until_notified(rig, "volume.delete.end", v.id)
    since = datetime.now(UTC) - timedelta(hours=1)
    until = datetime.now(UTC) + timedelta(hours=1)
    live = await usage(rig.pool, project_id=project, since=since, until=until, as_of=until)
    assert live
    await rig.pool.execute("DELETE FROM billing_intervals")
    await rig.pool.execute("DELETE FROM billing_volumes")
    gone = await usage(rig.pool, project_id=project, since=since, until=until, as_of=until)
    assert gone == []

    monkeypatch.setenv("CINDERBLOCK_DATABASE_URL", rig.settings.database_url)
    monkeypatch.setenv("CINDERBLOCK_LOG_LEVEL", "WARNING")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = await asyncio.to_thread(main, ["replay", "--projection", "billing", "--json"])
    finally:
        root.handlers[:], root.level = handlers, level
    out = capsys.readouterr().out
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["ledger"]["volumes"] >= len(volumes)
    rebuilt = await usage(rig.pool, project_id=project, since=since, until=until, as_of=until)
    assert _totals(rebuilt) == _totals(live)
