"""What the snapshot sagas (create, delete) and the revert saga do next, decided from the
snapshot and its volume. Pure; the runners in the sagas service do the I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cinderblock.domain.pending import Kind
from cinderblock.domain.snapshot import Snapshot, SnapshotStatus
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume

NO_BACKEND = "volume has no backend"


class SnapshotStep(Enum):
    SKIP = "skip"  # settled already (redelivery), or another saga does the work
    FAIL = "fail"  # record the failure ``reason`` without a driver step
    COPY = "copy"  # driver.create_snapshot on ``host``, then CreateCompleted
    REMOVE = "remove"  # driver.delete_snapshot on ``host``, then Deleted (quota given back)
    FORGET = "forget"  # no copy to remove (the volume has no backend): record Deleted


@dataclass(frozen=True)
class SnapshotDecision:
    step: SnapshotStep
    host: str | None = None
    reason: str | None = None


def decide_snapshot_create(snapshot: Snapshot | None, volume: Volume | None) -> SnapshotDecision:
    """On ``Snapshot.Created``: copy the volume's data while the snapshot is ``creating``.

    Compensation: a driver failure (or a volume on no backend) → ``CreateFailed``
    (``error``; its quota stays used until it is deleted, as in Cinder)."""
    if snapshot is None or snapshot.status != SnapshotStatus.CREATING:
        return SnapshotDecision(SnapshotStep.SKIP)
    if volume is None or volume.host is None:
        return SnapshotDecision(SnapshotStep.FAIL, reason=NO_BACKEND)
    return SnapshotDecision(SnapshotStep.COPY, host=volume.host)


def copy_outlived_snapshot(snapshot: Snapshot | None) -> bool:
    """A copy made while an admin force-deleted the snapshot (or reset its status): when
    the snapshot is going or gone its copy must go too (the delete saga may have run
    before the copy existed)."""
    return snapshot is not None and snapshot.status in (
        SnapshotStatus.DELETING,
        SnapshotStatus.DELETED,
    )


def decide_snapshot_delete(snapshot: Snapshot | None, volume: Volume | None) -> SnapshotDecision:
    """On ``Snapshot.DeleteRequested``: remove the copy while the snapshot is ``deleting``.
    A snapshot whose volume is ``deleting`` went with it (cascade): the volume's delete
    saga removes it.

    Compensation: a driver failure → ``DeleteFailed`` (``error_deleting``)."""
    if snapshot is None or snapshot.status != SnapshotStatus.DELETING:
        return SnapshotDecision(SnapshotStep.SKIP)
    if volume is not None and volume.status == Status.DELETING:
        return SnapshotDecision(SnapshotStep.SKIP)
    if volume is None or volume.host is None:
        return SnapshotDecision(SnapshotStep.FORGET)
    return SnapshotDecision(SnapshotStep.REMOVE, host=volume.host)


def decide_snapshot_in_volume_delete(
    snapshot_id: str, snapshot: Snapshot | None, host: str
) -> SnapshotDecision:
    """One snapshot of a volume being deleted (a cascade: every snapshot went to
    ``deleting`` with it): remove its copy on the volume's ``host``; one already deleted
    (or gone) is skipped; one in any other status fails the whole delete.

    Compensation: the volume and every snapshot still ``deleting`` → ``error_deleting``."""
    if snapshot is None or snapshot.status == SnapshotStatus.DELETED:
        return SnapshotDecision(SnapshotStep.SKIP)
    if snapshot.status != SnapshotStatus.DELETING:
        reason = f"snapshot {snapshot_id} is {snapshot.status}, not deleting"
        return SnapshotDecision(SnapshotStep.FAIL, reason=reason)
    return SnapshotDecision(SnapshotStep.REMOVE, host=host)


@dataclass(frozen=True)
class RevertRun:
    snapshot_id: str
    host: str


def revert_to_run(volume: Volume | None, request_version: int) -> RevertRun | None:
    """On ``RevertRequested`` at ``request_version``: the snapshot to restore and the
    volume's host, or None when the revert is settled already (or the volume has no host).

    Compensation: a driver failure → ``RevertFailed`` (volume ``error``), the snapshot
    back to ``available`` (Cinder's manager does the same)."""
    if volume is None or volume.host is None:
        return None
    pending = volume.pending_at(Kind.REVERT, request_version)
    if pending is None:
        return None
    return RevertRun(pending.payload.snapshot_id, volume.host)
