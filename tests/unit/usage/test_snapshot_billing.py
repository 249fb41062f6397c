"""Snapshots in the usage ledger and in Cinder's notifications: a snapshot is billed at its
size under the type it was taken with from ``CreateCompleted`` to ``Deleted``; stepping its
events one at a time (the consumer's kept fold) equals folding its whole story; each of its
events gives Cinder's snapshot notifications (names, payload keys); the envelope carries
the event the store decodes; a stored v1 ``Snapshot.Created`` (no type id) still folds."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cinderblock.domain.snapshot import Snapshot
from cinderblock.store.eventstore import RecordedEvent
from cinderblock.store.mapping import make_mapper
from cinderblock.usage.cursor import VolumeCursor
from cinderblock.usage.ledger import Resource, UsageClass, gib_hours, volume_intervals
from cinderblock.usage.notifications import snapshot_notifications
from cinderblock.usage.store import EventReader
from cinderblock.wire.envelope import ReceivedEnvelope
from tests.helpers.usage import HOUR, T0, at
from tests.unit.usage.test_envelope_events import _relay
from tests.unit.usage.test_notifications import CINDER_SNAPSHOT_KEYS

FIXTURES = Path(__file__).parents[2] / "fixtures" / "events"
VOLUME_ID = str(uuid.uuid4())


class SnapLife:
    """Commands on one snapshot, each event stamped at a chosen time."""

    def __init__(self, size: int = 4) -> None:
        self.snapshot = Snapshot.take(
            uuid.uuid4(),
            volume_id=VOLUME_ID,
            project_id="p1",
            user_id="u1",
            name="s1",
            description=None,
            volume_size=size,
            metadata={},
            volume_type_name="gold",
            volume_type_id="type-gold",
            availability_zone="az1",
        )
        self.events: list[Any] = [at(e, T0) for e in self.snapshot.collect_events()]

    def step(self, hours: int, command: Any) -> SnapLife:
        command(self.snapshot)
        self.events += [at(e, T0 + hours * HOUR) for e in self.snapshot.collect_events()]
        return self


def _billed_life() -> SnapLife:
    return (
        SnapLife()
        .step(1, lambda s: s.complete_create())
        .step(2, lambda s: s.update({"name": "renamed"}))
        .step(3, lambda s: s.update({"metadata": {"a": "b"}}))  # the metadata endpoints
        .step(4, lambda s: s.start_restore())
        .step(5, lambda s: s.end_restore())
        .step(6, lambda s: s.request_delete())
        .step(7, lambda s: s.complete_delete())
    )


def test_a_snapshot_is_billed_from_create_completion_to_delete_at_its_size() -> None:
    life = _billed_life()
    sid = str(life.snapshot.id)
    intervals = volume_intervals(sid, life.events)
    assert [(i.usage_class, i.started_at, i.ended_at) for i in intervals] == [
        (UsageClass.PENDING, T0, T0 + HOUR),
        (UsageClass.ACTIVE, T0 + HOUR, T0 + 7 * HOUR),
    ]
    billed = intervals[1]
    assert (billed.resource, billed.snapshot_volume_id) == (Resource.SNAPSHOT, VOLUME_ID)
    assert (billed.volume_type_id, billed.size_gb, billed.project_id) == ("type-gold", 4, "p1")
    assert gib_hours(intervals, T0, T0 + 24 * HOUR) == Decimal(4 * 6)


def test_an_error_snapshot_is_not_billed_while_it_is_deleted() -> None:
    life = (
        SnapLife()
        .step(1, lambda s: s.fail_create("backend said no"))
        .step(2, lambda s: s.request_delete())
        .step(3, lambda s: s.complete_delete())
    )
    intervals = volume_intervals(str(life.snapshot.id), life.events)
    assert [i.usage_class for i in intervals] == [UsageClass.PENDING, UsageClass.ERROR]
    assert gib_hours(intervals, T0, T0 + 24 * HOUR) == 0


def test_stepping_equals_folding_and_gives_cinders_notifications() -> None:
    life = _billed_life()
    life.step(8, lambda s: None)
    sid = str(life.snapshot.id)
    cursor = VolumeCursor(sid)
    rows: dict[int, Any] = {}
    notes = []
    for event in life.events:
        step = cursor.step(event, default_host="h1")
        for interval in (step.closed, step.opened):
            if interval is not None:
                rows[interval.start_version] = interval
        # The slow path (the store's events) gives the same notifications.
        by_store = snapshot_notifications(
            life.events, event.originator_version, availability_zone=None, host="h1"
        )
        assert step.notifications == by_store
        notes += step.notifications
    assert [rows[k] for k in sorted(rows)] == volume_intervals(sid, life.events)
    assert [n.event_type for n in notes] == [
        "snapshot.create.start",
        "snapshot.create.end",
        "snapshot.update.start",
        "snapshot.update.end",
        "snapshot.revert.start",
        "snapshot.revert.end",
        "snapshot.delete.start",
        "snapshot.delete.end",
    ]
    for n in notes:
        assert set(n.payload) == CINDER_SNAPSHOT_KEYS
        assert (n.publisher_id, n.priority) == ("snapshot.h1", "INFO")
        assert n.payload["availability_zone"] == "az1"
        assert (n.payload["snapshot_id"], n.payload["volume_size"]) == (sid, 4)
    by_type = {n.event_type: n.payload for n in notes}
    assert by_type["snapshot.update.start"]["display_name"] == "s1"
    assert by_type["snapshot.update.end"]["display_name"] == "renamed"
    assert by_type["snapshot.revert.start"]["status"] == "restoring"
    assert (
        by_type["snapshot.delete.end"]["status"],
        by_type["snapshot.delete.end"]["deleted"],
    ) == (
        "deleted",
        "True",
    )
    assert by_type["snapshot.create.end"]["metadata"] == ""
    assert by_type["snapshot.delete.start"]["metadata"] == str({"a": "b"})


def test_reset_status_is_a_start_and_end_pair() -> None:
    life = (
        SnapLife().step(1, lambda s: s.complete_create()).step(2, lambda s: s.reset_status("error"))
    )
    start, end = snapshot_notifications(life.events, 3, availability_zone=None, host="h1")
    assert (start.event_type, start.payload["status"]) == (
        "snapshot.reset_status.start",
        "available",
    )
    assert (end.event_type, end.payload["status"]) == ("snapshot.reset_status.end", "error")
    billed = volume_intervals(str(life.snapshot.id), life.events)
    assert [i.usage_class for i in billed] == [
        UsageClass.PENDING,
        UsageClass.ACTIVE,
        UsageClass.ERROR,
    ]


def _fixture_records() -> list[RecordedEvent]:
    rows = json.loads((FIXTURES / "snapshot_created_v1.json").read_text())["rows"]
    now = datetime.now(UTC)
    return [
        RecordedEvent(
            n,
            n,
            uuid.UUID(r["originator_id"]),
            r["originator_version"],
            r["topic"],
            r["state"].encode(),
            {},
            now,
        )
        for n, r in enumerate(rows, 1)
    ]


def _life_records(life: SnapLife) -> list[RecordedEvent]:
    mapper = make_mapper()
    now = datetime.now(UTC)
    return [
        RecordedEvent(n, n, s.originator_id, s.originator_version, s.topic, s.state, {}, now)
        for n, s in enumerate((mapper.to_stored_event(e) for e in life.events), 1)
    ]


def test_a_stored_v1_snapshot_folds_with_its_volumes_zone_and_no_type() -> None:
    relay, reader = _relay(), EventReader()
    records = _fixture_records()
    events = [relay.store.decode(r) for r in records]
    created = events[0]
    assert (created.volume_type_id, created.availability_zone) == (None, None)
    (_, billed) = volume_intervals(str(created.originator_id), events)
    assert (billed.volume_type_id, billed.size_gb, billed.usage_class) == ("", 2, UsageClass.ACTIVE)
    assert billed.ended_at is not None
    assert billed.ended_at - billed.started_at == 2 * HOUR  # completed at +1h, deleted at +3h
    notes = snapshot_notifications(events, 1, availability_zone="nova", host="h1")
    assert notes[0].payload["availability_zone"] == "nova"
    # The envelopes of those rows (and of a v2 life) decode to the store's events.
    for record in records + _life_records(_billed_life()):
        env = ReceivedEnvelope.model_validate_json(relay.message(record).payload)
        stored = relay.store.decode(record)
        decoded = reader.from_envelope(env)
        assert type(decoded) is type(stored)
        assert vars(decoded) == vars(stored)


def test_the_report_and_the_cli_keep_volumes_and_snapshots_apart() -> None:
    from cinderblock.cli.usage import render
    from cinderblock.usage.report import usage_body
    from cinderblock.usage.store import UsageRow

    rows = [
        UsageRow("p1", "v1", "a", Decimal(2), Decimal(4)),
        UsageRow("p1", "v1", "a", Decimal(1), Decimal("1.5"), "snapshot", "s1"),
        UsageRow("p1", "v1", "b", Decimal(1), Decimal("0.5"), "snapshot", "s2"),
    ]
    body = usage_body(rows, project_id="p1", since=T0, until=T0 + HOUR)
    report = body["usage"]
    assert (report["total_gib_hours"], report["volume_gib_hours"]) == (6.0, 4.0)
    assert report["snapshot_gib_hours"] == 2.0
    assert [v["volume_id"] for v in report["volumes"]] == ["v1"]
    assert report["snapshots"][0] == {
        "project_id": "p1",
        "snapshot_id": "s1",
        "volume_id": "v1",
        "volume_type_id": "a",
        "hours": 1.0,
        "gib_hours": 1.5,
    }
    assert report["volume_types"] == [
        {
            "volume_type_id": "a",
            "gib_hours": 5.5,
            "volume_gib_hours": 4.0,
            "snapshot_gib_hours": 1.5,
        },
        {
            "volume_type_id": "b",
            "gib_hours": 0.5,
            "volume_gib_hours": 0.0,
            "snapshot_gib_hours": 0.5,
        },
    ]
    csv_lines = render(body, "csv").splitlines()
    assert (
        csv_lines[0] == "project_id,resource,volume_id,snapshot_id,volume_type_id,hours,gib_hours"
    )
    assert csv_lines[1:] == [
        "p1,volume,v1,,a,2.0,4.0",
        "p1,snapshot,v1,s1,a,1.0,1.5",
        "p1,snapshot,v1,s2,b,1.0,0.5",
    ]
    table = render(body, "table").splitlines()
    assert [line.split()[0] for line in table[-3:]] == ["volumes", "snapshots", "total"]
    assert table[-1].split()[-1] == "6.0"
