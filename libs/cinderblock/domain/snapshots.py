"""The volume's side of snapshots: which it has (newest last), the rules for taking one, and
revert to the newest (spec §3.3, §5.1). A mixin of Volume with explicit events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain.errors import (
    InvalidVolumeError,
    StaleCommandError,
    VolumeConflictError,
    VolumeError,
)
from cinderblock.domain.pending import Kind, PendingOperation, RevertPayload
from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.status import NOT_MIGRATING, Status

CASCADE_REFUSED = (
    "Volume {status}must not be migrating, attached, belong to a group, have snapshots, "
    "awaiting a transfer, or be disassociated from snapshots after volume transfer."
)
"""Cinder's message when a (cascade) delete's conditions fail; ``status`` is empty when forced."""
DELETABLE_STATUS_TEXT = (
    "status must be available or error or error_restoring or error_extending or error_managing and "
)


class RevertConflictError(VolumeConflictError):
    """Raised when the volume or the snapshot is not in a state to revert (409, with
    Cinder's InvalidVolume or InvalidSnapshot text)."""

    code = "revert_conflict"

    @classmethod
    def volume_not_available(cls, volume_id: str, snapshot_id: str) -> RevertConflictError:
        return cls(
            f"Invalid volume: {_cannot_revert(volume_id, snapshot_id)} Volume's status "
            "must be 'available'."
        )

    @classmethod
    def snapshot_not_available(cls, volume_id: str, snapshot_id: str) -> RevertConflictError:
        return cls(
            f"Invalid snapshot: {_cannot_revert(volume_id, snapshot_id)} Snapshot's status "
            "must be 'available'."
        )


def _cannot_revert(volume_id: str, snapshot_id: str | None) -> str:
    return f"Can't revert volume {volume_id} to its latest snapshot {snapshot_id}."


class Snapshots:
    status: Status
    migration_status: str | None
    host: str | None
    size_gb: int
    snapshot_ids: list[str]
    vid: str

    class SnapshotTaken(Aggregate.Event):
        snapshot_id: str

        def apply(self, volume: Any) -> None:
            volume.snapshot_ids.append(self.snapshot_id)

    class SnapshotRemoved(Aggregate.Event):
        snapshot_id: str

        def apply(self, volume: Any) -> None:
            if self.snapshot_id in volume.snapshot_ids:
                volume.snapshot_ids.remove(self.snapshot_id)

    class RevertRequested(Aggregate.Event):
        snapshot_id: str

        def apply(self, volume: Any) -> None:
            volume.status = Status.REVERTING
            volume._begin(Kind.REVERT, RevertPayload(self.snapshot_id))

    class Reverted(Aggregate.Event):
        snapshot_id: str

        def apply(self, volume: Any) -> None:
            volume.status = Status.AVAILABLE
            volume._end(Kind.REVERT)

    class RevertFailed(Aggregate.Event):
        snapshot_id: str
        reason: str

        def apply(self, volume: Any) -> None:
            volume.status = Status.ERROR
            volume._end(Kind.REVERT)

    def take_snapshot(self, snapshot_id: str, *, force: bool, in_use_ok: bool) -> None:
        """Rules of POST /snapshots on the volume (``in_use_ok``: force given or 3.66+)."""
        if self.host is None:
            raise InvalidVolumeError(f"Volume {self.vid} has no host: it was never created.")
        if self.status == Status.MAINTENANCE:
            raise InvalidVolumeError(f"Volume {self.vid} is in maintenance.")
        if self.migration_status not in NOT_MIGRATING:
            raise InvalidVolumeError(f"Volume {self.vid} is being migrated.")
        allowed = {Status.AVAILABLE, Status.IN_USE} if (force or in_use_ok) else {Status.AVAILABLE}
        if self.status not in allowed:
            raise InvalidVolumeError(
                f"Volume {self.vid} status must be available, currently {self.status}."
            )
        self.trigger_event(self.SnapshotTaken, snapshot_id=snapshot_id)  # type: ignore[attr-defined]

    def forget_snapshot(self, snapshot_id: str) -> None:
        if snapshot_id in self.snapshot_ids:
            self.trigger_event(self.SnapshotRemoved, snapshot_id=snapshot_id)  # type: ignore[attr-defined]

    def request_delete_cascade(self, snapshots: Sequence[Snapshot], *, force: bool) -> bool:
        """DELETE /volumes/{id}?cascade=true (spec §2.4): every snapshot must be ``available``
        or ``error`` (forced: also ``error_deleting``); the volume's own delete rules apply
        (``force`` skips its status check); then the volume and every snapshot move to
        ``deleting`` together. All checks come before the first event, so a refusal records
        nothing. Returns True when the volume is gone at once (never placed)."""
        if {s.sid for s in snapshots} != set(self.snapshot_ids):
            raise StaleCommandError(f"Snapshots of volume {self.vid} changed meanwhile.")
        if not all(s.deletable(forced=force) for s in snapshots):
            status = "" if force else DELETABLE_STATUS_TEXT
            raise InvalidVolumeError(CASCADE_REFUSED.format(status=status))
        gone: bool = self.request_delete(force=force, with_snapshots=True)  # type: ignore[attr-defined]
        for snapshot in snapshots:
            snapshot.request_delete(forced=force)
        return gone

    def latest_snapshot(self) -> str | None:
        return self.snapshot_ids[-1] if self.snapshot_ids else None

    def check_revert_target(self, snapshot_id: str | None, snapshot_size: int | None) -> None:
        """Cinder's controller checks, before the policy: the volume has snapshots, the one
        named is the newest (whatever its status), the volume has its size (400s)."""
        latest = self.latest_snapshot()
        if latest is None:
            raise VolumeError(f"Volume {self.vid} doesn't have any snapshots.")
        if snapshot_id != latest:
            raise VolumeError(
                f"Specified snapshot {snapshot_id} is None or not the latest one of volume "
                f"{self.vid}."
            )
        if snapshot_size != self.size_gb:
            raise VolumeError(
                f"{_cannot_revert(self.vid, snapshot_id)} The volume size must be equal to "
                "the snapshot size."
            )

    def request_revert(self, snapshot_id: str | None, snapshot_size: int | None) -> None:
        """revert: the controller's checks, then the volume must be ``available`` (409; the
        snapshot's own status is checked beside it, also 409)."""
        self.check_revert_target(snapshot_id, snapshot_size)
        if self.status != Status.AVAILABLE:
            raise RevertConflictError.volume_not_available(self.vid, str(snapshot_id))
        self.trigger_event(self.RevertRequested, snapshot_id=snapshot_id)  # type: ignore[attr-defined]

    def revert_pending_for(self, request_version: int) -> PendingOperation[RevertPayload]:
        return self.require_pending(Kind.REVERT, request_version)  # type: ignore[attr-defined,no-any-return]

    def complete_revert(self, request_version: int) -> None:
        pending = self.revert_pending_for(request_version)
        self.trigger_event(self.Reverted, snapshot_id=pending.payload.snapshot_id)  # type: ignore[attr-defined]

    def fail_revert(self, request_version: int, reason: str) -> None:
        pending = self.revert_pending_for(request_version)
        self.trigger_event(  # type: ignore[attr-defined]
            self.RevertFailed, snapshot_id=pending.payload.snapshot_id, reason=reason
        )
