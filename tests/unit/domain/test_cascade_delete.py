"""Cascade delete on the aggregates: the volume and all its snapshots move to deleting
together, or nothing is recorded."""

from __future__ import annotations

import uuid

import pytest

from cinderblock.domain.errors import InvalidVolumeError, StaleCommandError
from cinderblock.domain.snapshot import Snapshot, SnapshotStatus
from cinderblock.domain.status import AttachStatus, Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import PROJECT, available


def with_snapshots(count: int) -> tuple[Volume, list[Snapshot]]:
    volume = available()
    snapshots = []
    for _ in range(count):
        sid = uuid.uuid4()
        volume.take_snapshot(str(sid), force=False, in_use_ok=False)
        snapshot = Snapshot.take(
            sid,
            volume_id=volume.vid,
            project_id=PROJECT,
            user_id="u",
            name=None,
            description=None,
            volume_size=volume.size_gb,
            metadata={},
            volume_type_name=volume.volume_type_name,
        )
        snapshot.complete_create()
        snapshot.collect_events()
        snapshots.append(snapshot)
    volume.collect_events()
    return volume, snapshots


def names(*aggregates: Volume | Snapshot) -> list[str]:
    return [type(e).__qualname__ for a in aggregates for e in a.collect_events()]


def test_volume_and_snapshots_move_to_deleting_together() -> None:
    volume, snapshots = with_snapshots(2)
    assert volume.request_delete_cascade(snapshots, force=False) is False
    assert volume.status == Status.DELETING
    assert all(s.status == SnapshotStatus.DELETING for s in snapshots)
    assert names(volume, *snapshots) == [
        "Volume.DeleteRequested",
        "Snapshot.DeleteRequested",
        "Snapshot.DeleteRequested",
    ]


def test_without_snapshots_it_is_a_plain_delete() -> None:
    volume, _ = with_snapshots(0)
    assert volume.request_delete_cascade([], force=False) is False
    assert names(volume) == ["Volume.DeleteRequested"]


@pytest.mark.parametrize("status", ["creating", "error_deleting", "restoring", "deleting"])
def test_a_busy_or_failed_snapshot_refuses_and_records_nothing(status: str) -> None:
    volume, snapshots = with_snapshots(2)
    snapshots[1].status = status
    with pytest.raises(InvalidVolumeError, match=r"^Volume status must be available or error"):
        volume.request_delete_cascade(snapshots, force=False)
    assert names(volume, *snapshots) == []
    assert volume.status == Status.AVAILABLE
    assert snapshots[0].status == SnapshotStatus.AVAILABLE


def test_forced_cascade_takes_error_deleting_but_not_busy_snapshots() -> None:
    volume, snapshots = with_snapshots(2)
    snapshots[0].status = SnapshotStatus.ERROR_DELETING
    volume.status = Status.ERROR_DELETING
    with pytest.raises(InvalidVolumeError):
        volume.request_delete_cascade(snapshots, force=False)
    assert volume.request_delete_cascade(snapshots, force=True) is False
    assert volume.status == Status.DELETING
    busy_volume, busy = with_snapshots(1)
    busy[0].status = SnapshotStatus.CREATING
    with pytest.raises(InvalidVolumeError, match=r"^Volume must not be migrating"):
        busy_volume.request_delete_cascade(busy, force=True)


def test_the_volume_rules_still_apply() -> None:
    volume, snapshots = with_snapshots(1)
    volume.attach_status = AttachStatus.ATTACHED
    with pytest.raises(InvalidVolumeError):
        volume.request_delete_cascade(snapshots, force=True)
    assert names(volume, *snapshots) == []


def test_the_snapshots_given_must_be_the_volumes() -> None:
    volume, snapshots = with_snapshots(2)
    with pytest.raises(StaleCommandError):
        volume.request_delete_cascade(snapshots[:1], force=False)
