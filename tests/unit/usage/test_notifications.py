"""Notifications carry Cinder's names, keys and envelope; the same event always yields the
same message (so a redelivery republishes the same message_id)."""

from __future__ import annotations

import uuid

import pytest

from cinderblock.domain.snapshot import Snapshot
from cinderblock.usage.notifications import (
    SNAPSHOT_NOTIFICATIONS,
    VOLUME_NOTIFICATIONS,
    snapshot_notifications,
    volume_notifications,
)
from tests.helpers.usage import HOUR, T0, Life, at, canonical

pytestmark = pytest.mark.unit

# cinder/volume/volume_utils.py `_usage_from_volume` (plus volume_attachment, and
# glance_metadata when the volume has image metadata).
CINDER_VOLUME_KEYS = {
    "tenant_id",
    "host",
    "user_id",
    "availability_zone",
    "volume_id",
    "volume_type",
    "display_name",
    "launched_at",
    "created_at",
    "status",
    "snapshot_id",
    "size",
    "replication_status",
    "replication_extended_status",
    "replication_driver_data",
    "metadata",
    "volume_attachment",
}
# `_usage_from_snapshot`
CINDER_SNAPSHOT_KEYS = {
    "tenant_id",
    "user_id",
    "availability_zone",
    "volume_id",
    "volume_size",
    "snapshot_id",
    "display_name",
    "created_at",
    "status",
    "deleted",
    "metadata",
}
# Event types Cinder emits for these actions (ecosystem spec §3.2).
CINDER_EVENT_TYPES = {
    "volume.create.start",
    "volume.create.end",
    "volume.delete.start",
    "volume.delete.end",
    "volume.resize.start",
    "volume.resize.end",
    "volume.attach.start",
    "volume.attach.end",
    "volume.detach.start",
    "volume.detach.end",
    "volume.retype",
    "volume.revert.start",
    "volume.revert.end",
    "volume.update.start",
    "volume.update.end",
    "volume.reset_status.start",
    "volume.reset_status.end",
    "volume.unmanage.start",
    "volume.unmanage.end",
    "snapshot.create.start",
    "snapshot.create.end",
    "snapshot.delete.start",
    "snapshot.delete.end",
    "snapshot.update.start",
    "snapshot.update.end",
    "snapshot.reset_status.start",
    "snapshot.reset_status.end",
    "snapshot.revert.start",
    "snapshot.revert.end",
}
ENVELOPE = {"message_id", "publisher_id", "event_type", "priority", "payload", "timestamp"}


def _all(life: Life) -> list:  # type: ignore[type-arg]
    return [
        n
        for e in life.events
        for n in volume_notifications(life.events, e.originator_version, default_host="api1")
    ]


def test_every_mapped_name_is_one_cinder_emits() -> None:
    mapped = {t for pairs in VOLUME_NOTIFICATIONS.values() for t, _ in pairs}
    snapshots = {t for pairs in SNAPSHOT_NOTIFICATIONS.values() for t, _ in pairs}
    assert mapped | snapshots == CINDER_EVENT_TYPES


def test_a_volume_life_in_cinder_notifications() -> None:
    life = canonical(Life())
    notes = _all(life)
    assert [n.event_type for n in notes] == [
        "volume.create.start",
        "volume.create.end",
        "volume.resize.start",
        "volume.resize.end",
        "volume.retype",
        "volume.reset_status.start",
        "volume.reset_status.end",
        "volume.delete.start",
        "volume.delete.end",
    ]
    for n in notes:
        assert set(n.message()) == ENVELOPE
        assert set(n.payload) == CINDER_VOLUME_KEYS
        assert n.priority == "INFO"
        assert n.publisher_id == "volume.node@file-a" or n.event_type == "volume.create.start"
    by_type = {n.event_type: n for n in notes}
    assert by_type["volume.create.start"].publisher_id == "volume.api1"
    assert by_type["volume.resize.start"].payload["size"] == 10
    assert by_type["volume.resize.end"].payload["size"] == 20
    assert by_type["volume.retype"].payload["volume_type"] == "type-b"
    assert by_type["volume.reset_status.start"].payload["status"] == "available"
    assert by_type["volume.reset_status.end"].payload["status"] == "error"
    assert by_type["volume.delete.end"].payload["status"] == "deleted"
    end = by_type["volume.create.end"]
    assert end.timestamp == "2026-03-01 01:00:00"  # str(utcnow()) form: no zone, space
    assert end.payload["launched_at"] == "2026-03-01T01:00:00"
    assert end.payload["created_at"] == "2026-03-01T00:00:00"
    assert end.payload["tenant_id"] == "p1"
    assert end.payload["volume_id"] == str(life.id)
    assert end.payload["metadata"] == {"k": "v"}
    assert len({n.message_id for n in notes}) == len(notes)


def test_the_same_event_yields_the_same_message() -> None:
    life = canonical(Life())
    assert _all(life) == _all(life)


def test_update_attach_and_detach_show_before_and_after() -> None:
    life = Life()
    life.step(T0 + HOUR, lambda v: v.complete_create("h@b#p"))
    life.step(T0 + 2 * HOUR, lambda v: v.update({"name": "renamed"}))
    attachment = str(uuid.uuid4())
    life.step(
        T0 + 3 * HOUR,
        lambda v: v.attach(
            attachment, mountpoint="/dev/vdb", mode="rw", instance_uuid="i-1", host_name=None
        ),
    )
    life.step(T0 + 4 * HOUR, lambda v: v.detach(attachment))
    notes = {n.event_type: n for n in _all(life)}
    assert notes["volume.update.start"].payload["display_name"] == "vol"
    assert notes["volume.update.end"].payload["display_name"] == "renamed"
    assert notes["volume.attach.start"].payload["volume_attachment"] == []
    (row,) = notes["volume.attach.end"].payload["volume_attachment"]
    assert row["instance_uuid"] == "i-1"
    assert row["mountpoint"] == "/dev/vdb"
    assert notes["volume.attach.end"].payload["status"] == "in-use"
    assert len(notes["volume.detach.start"].payload["volume_attachment"]) == 1
    assert notes["volume.detach.end"].payload["volume_attachment"] == []


def test_a_failed_create_is_an_error_notification_from_the_scheduler() -> None:
    life = Life()
    life.step(T0 + HOUR, lambda v: v.fail_create("No valid backend was found."))
    (note,) = volume_notifications(life.events, 2, default_host="api1")
    assert (note.event_type, note.priority) == ("scheduler.create_volume", "ERROR")
    assert note.payload["reason"] == "No valid backend was found."
    assert note.payload["volume_id"] == str(life.id)


def test_snapshot_notifications() -> None:
    snap = Snapshot.take(
        uuid.uuid4(),
        volume_id=str(uuid.uuid4()),
        project_id="p1",
        user_id="u1",
        name="s1",
        description=None,
        volume_size=10,
        metadata={},
        volume_type_name="type-a",
    )
    snap.complete_create()
    events = [at(e, T0 + i * HOUR) for i, e in enumerate(snap.collect_events())]
    notes = [
        n
        for e in events
        for n in snapshot_notifications(
            events, e.originator_version, availability_zone="az1", host="h1"
        )
    ]
    assert [n.event_type for n in notes] == ["snapshot.create.start", "snapshot.create.end"]
    for n in notes:
        assert set(n.payload) == CINDER_SNAPSHOT_KEYS
        assert n.publisher_id == "snapshot.h1"
    assert notes[1].payload["status"] == "available"
    assert notes[1].payload["availability_zone"] == "az1"
    assert notes[1].payload["deleted"] == ""
