"""Replay's decoder gives every event exactly what the live projector gets through the
mapper, for events of every kind the generator makes."""

from __future__ import annotations

import random
import uuid

from eventsourcing.persistence import StoredEvent

from cinderblock.cli.eventlog import LogWriter, World
from cinderblock.replay.decode import Decoder
from cinderblock.store.mapping import event_data, event_name, make_mapper


def generated_rows(count: int) -> list[tuple[uuid.UUID, int, str, bytes, str]]:
    out = LogWriter()
    world = World(random.Random(1), out)
    while len(out.rows) < count:
        world.act()
    return out.rows


def test_decoder_equals_the_mapper_for_every_generated_event() -> None:
    mapper, decode = make_mapper(), Decoder()
    rows = generated_rows(6_000)
    names = set()
    for originator_id, version, topic, state, _meta in rows:
        fast = decode(topic, originator_id, version, state)
        assert fast is not None
        slow = mapper.to_domain_event(StoredEvent(originator_id, version, topic, state))
        assert (fast.name, fast.aggregate_id, fast.version, fast.timestamp) == (
            event_name(topic),
            originator_id,
            version,
            slow.timestamp,
        )
        assert fast.data == event_data(slow), topic
        names.add(fast.name)
    assert len(names) >= 25  # creates, extends, attachments, snapshots, quotas, types…


def test_transcoded_values_inside_fields_are_made_plain() -> None:
    mapper = make_mapper()
    when = "2026-11-27T02:00:00+00:00"
    state = mapper.transcoder.encode(
        {
            "timestamp": mapper.transcoder.decode(
                b'{"_type_":"datetime_iso","_data_":"' + when.encode() + b'"}'
            ),
            "changes": {"id": uuid.UUID(int=5), "nested": [uuid.UUID(int=6)]},
        }
    )
    event = Decoder()("cinderblock.domain.volume:Volume.Updated", uuid.uuid4(), 2, state)
    assert event is not None
    assert event.data == {
        "changes": {"id": str(uuid.UUID(int=5)), "nested": [str(uuid.UUID(int=6))]}
    }


def test_unwanted_events_are_not_decoded() -> None:
    decode = Decoder(wanted={"Volume.Created"})
    assert decode("cinderblock.domain.volume:Volume.SnapshotTaken", uuid.uuid4(), 3, b"{") is None


def test_json_orjson_refuses_is_parsed_by_the_standard_library() -> None:
    state = (
        b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-27T02:00:00+00:00"},'
        b'"changes":{"huge":' + str(2**70).encode() + b"}}"
    )
    event = Decoder()("cinderblock.domain.volume:Volume.Updated", uuid.uuid4(), 2, state)
    assert event is not None
    assert event.data == {"changes": {"huge": 2**70}}


def test_with_domain_gives_the_mappers_domain_events_and_the_same_projection_events() -> None:
    """One pass for the read models and the usage ledger: the domain events equal the
    mapper's (class and every attribute), the projection events equal ``rows``'."""
    mapper = make_mapper()
    rows = [
        (0, n, originator_id, version, topic, state)
        for n, (originator_id, version, topic, state, _meta) in enumerate(generated_rows(4_000))
    ]
    prefix = "cinderblock.domain.volume:"
    events, failed, domain = Decoder().with_domain(rows, "test", prefix)
    alone, _ = Decoder().rows(rows, "test")
    assert failed == []
    assert [(e.name, e.aggregate_id, e.version, e.timestamp, e.data) for e in events] == [
        (e.name, e.aggregate_id, e.version, e.timestamp, e.data) for e in alone
    ]
    assert [r for r, _ in domain] == [r for r in rows if r[4].startswith(prefix)]
    for r, event in domain:
        slow = mapper.to_domain_event(StoredEvent(r[2], r[3], r[4], r[5]))
        assert type(event) is type(slow)
        assert vars(event) == vars(slow), r[4]
    # The aggregate may keep a dict an event gives it: never one the projection event has.
    volume_events = [e for e in events if e.name.startswith("Volume.")]
    for (_, event), projected in zip(domain, volume_events, strict=True):
        for key, value in vars(event).items():
            if isinstance(value, dict | list):
                assert value is not projected.data.get(key)


def test_with_domain_hands_the_ledger_the_mappers_error_for_a_state_it_cannot_take() -> None:
    volume_id = uuid.uuid4()
    rows = [(0, 1, volume_id, 1, "cinderblock.domain.volume:Volume.Updated", b"{not json")]
    events, failed, domain = Decoder().with_domain(rows, "test", "cinderblock.domain.volume:")
    assert events == []
    assert [(f.aggregate_id, f.version, f.consumer) for f in failed] == [(volume_id, 1, "test")]
    [(row, error)] = domain
    assert row is rows[0]
    assert type(error).__name__ == "MapperDeserialisationError"
