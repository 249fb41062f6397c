"""Billing steps a volume's fold from the envelope alone (no read of the event store): the
event an envelope carries decodes to exactly what the store decodes, for every volume event
of a life, the stored v1 rows (upcast) included; and an envelope that cannot say (an event
type this code does not know, another envelope schema) sends billing to the store."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cinderblock.relay.run import Relay
from cinderblock.store.eventstore import RecordedEvent
from cinderblock.store.mapping import make_mapper
from cinderblock.usage.cursor import VolumeCursor
from cinderblock.usage.store import EventReader
from cinderblock.wire.envelope import ReceivedEnvelope
from tests.helpers.servers import make_settings
from tests.helpers.usage import HOUR, T0, Life, canonical

FIXTURES = Path(__file__).parents[2] / "fixtures" / "events"


def _attached() -> Life:
    life = Life()
    life.step(T0 + HOUR, lambda v: v.complete_create("node@file-a#pool0"))
    life.step(T0 + 2 * HOUR, lambda v: v.set_bootable(True))
    life.step(T0 + 3 * HOUR, lambda v: v.reserve())
    life.step(
        T0 + 4 * HOUR,
        lambda v: v.attach(
            "a-1", mountpoint="/dev/vdb", mode="rw", instance_uuid="i-1", host_name=None
        ),
    )
    life.step(T0 + 5 * HOUR, lambda v: v.update({"name": "renamed", "metadata": {"a": "b"}}))
    life.step(T0 + 6 * HOUR, lambda v: v.detach(None))
    return life


def _records(rows: list[tuple[uuid.UUID, int, str, bytes]]) -> list[RecordedEvent]:
    now = datetime.now(UTC)
    return [
        RecordedEvent(n, n, vid, version, topic, state, {"request_id": "req-1"}, now)
        for n, (vid, version, topic, state) in enumerate(rows, 1)
    ]


def _life_rows(life: Life) -> list[tuple[uuid.UUID, int, str, bytes]]:
    mapper = make_mapper()
    stored = [mapper.to_stored_event(e) for e in life.events]
    return [(s.originator_id, s.originator_version, s.topic, s.state) for s in stored]


def _fixture_rows(name: str) -> list[tuple[uuid.UUID, int, str, bytes]]:
    rows = json.loads((FIXTURES / name).read_text())["rows"]
    return [
        (
            uuid.UUID(r["originator_id"]),
            r["originator_version"],
            r["topic"],
            r["state"].encode(),
        )
        for r in rows
        if r["topic"].startswith("cinderblock.domain.volume:")
    ]


def _relay() -> Relay:
    settings = make_settings("postgresql://unused", "nats://unused", "envelope", Path("/tmp"))
    return Relay(settings, None, None)  # type: ignore[arg-type]  # message() reads neither


@pytest.mark.parametrize(
    "rows",
    [
        lambda: _life_rows(canonical(Life())),
        lambda: _life_rows(_attached()),
        lambda: _fixture_rows("volume_extended_v1.json"),
        lambda: _fixture_rows("volume_status_outcomes_v1.json"),
    ],
    ids=["canonical", "attached", "extended-v1", "status-outcomes-v1"],
)
def test_the_envelope_carries_the_event_the_store_decodes(rows: Any) -> None:
    relay, reader = _relay(), EventReader()
    records = _records(rows())
    assert records
    cursors: dict[uuid.UUID, VolumeCursor] = {}
    for record in records:
        env = ReceivedEnvelope.model_validate_json(relay.message(record).payload)
        stored = relay.store.decode(record)
        from_envelope = reader.from_envelope(env)
        assert type(from_envelope) is type(stored)
        assert vars(from_envelope) == vars(stored)
        # ... and the fold steps on it the same way (ledger change and notifications).
        vid = record.originator_id
        by_store = VolumeCursor.of_events(str(vid), [])
        by_envelope = cursors.setdefault(vid, VolumeCursor(str(vid)))
        for e in [relay.store.decode(r) for r in records if r.originator_id == vid]:
            if e.originator_version == record.originator_version:
                break
            by_store.step(e, default_host="h")
        expected = by_store.step(stored, default_host="h")
        got = by_envelope.step(from_envelope, default_host="h")
        assert (got.closed, got.opened) == (expected.closed, expected.opened)
        assert [n.message() for n in got.notifications] == [
            n.message() for n in expected.notifications
        ]


def test_an_envelope_that_cannot_say_sends_billing_to_the_store() -> None:
    relay, reader = _relay(), EventReader()
    record = _records(_life_rows(Life()))[0]
    env = ReceivedEnvelope.model_validate_json(relay.message(record).payload)
    assert reader.from_envelope(env) is not None
    assert reader.from_envelope(env.model_copy(update={"type": "volume.from_the_future"})) is None
    assert reader.from_envelope(env.model_copy(update={"schema_version": 2})) is None
    assert reader.from_envelope(env.model_copy(update={"aggregate": "snapshot"})) is None
