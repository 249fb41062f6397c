"""The Snapshot aggregate: a point-in-time copy of a volume, created and deleted by sagas,
and the source of a volume's revert."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate, event

from cinderblock.domain.errors import InvalidInputError
from cinderblock.domain.user_messages import UserMessages


class SnapshotStatus:
    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    RESTORING = "restoring"
    # Every status Cinder knows (an admin's os-reset_status may set any of them).
    ALL = (
        *("error", "available", "creating", "deleting", "deleted", "updating"),
        *("error_deleting", "unmanaging", "backing-up", "restoring"),
    )


class SnapshotNotFoundError(InvalidInputError):
    """Raised when a snapshot does not exist, is deleted, or belongs to another project."""

    code = "snapshot_not_found"

    def __init__(self, snapshot_id: str) -> None:
        super().__init__(f"Snapshot {snapshot_id} could not be found.")
        self.snapshot_id = snapshot_id


class InvalidSnapshotError(InvalidInputError):
    """Raised when the snapshot's status does not allow the request (Cinder's
    InvalidSnapshot, 400)."""

    code = "invalid_snapshot"


class Snapshot(UserMessages, Aggregate):
    class Created(Aggregate.Created):
        """v2 adds ``volume_type_id`` (the type the volume had when the snapshot was taken:
        a volume made from the snapshot gets it, billing bills the snapshot under it) and
        ``availability_zone`` (its volume's, for the notifications' payload). Stored v1
        events are upcast with both None: the type is then the one named
        ``volume_type_name``, the zone its volume's."""

        class_version = 2
        volume_id: str
        project_id: str
        user_id: str
        name: str | None
        description: str | None
        volume_size: int
        metadata: dict[str, str]
        volume_type_name: str
        volume_type_id: str | None
        availability_zone: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["volume_type_id"] = None
            state["availability_zone"] = None

    class CreateCompleted(Aggregate.Event):
        pass

    class CreateFailed(Aggregate.Event):
        reason: str

    class Updated(Aggregate.Event):
        changes: dict[str, Any]

    class DeleteRequested(Aggregate.Event):
        pass

    class Deleted(Aggregate.Event):
        pass

    class DeleteFailed(Aggregate.Event):
        reason: str

    class RestoreStarted(Aggregate.Event):
        pass

    class RestoreEnded(Aggregate.Event):
        pass

    class StatusReset(Aggregate.Event):
        status: str

    @event(Created)
    def __init__(
        self,
        volume_id: str,
        project_id: str,
        user_id: str,
        name: str | None,
        description: str | None,
        volume_size: int,
        metadata: dict[str, str],
        volume_type_name: str,
        volume_type_id: str | None,
        availability_zone: str | None,
    ) -> None:
        self.volume_id = volume_id
        self.project_id = project_id
        self.user_id = user_id
        self.name = name
        self.description = description
        self.volume_size = volume_size
        self.metadata = dict(metadata)
        self.volume_type_name = volume_type_name
        self.volume_type_id = volume_type_id
        self.availability_zone = availability_zone
        self.status = SnapshotStatus.CREATING
        # The status before a delete request (``deleting`` keeps its billing class).
        self.previous_status: str | None = None

    @classmethod
    def take(cls, snapshot_id: Any, **fields: Any) -> Snapshot:
        """The snapshot of a volume; ``volume_type_id`` and ``availability_zone`` should be
        the volume's (left out: unknown, as in a snapshot stored before they were kept)."""
        fields.setdefault("volume_type_id", None)
        fields.setdefault("availability_zone", None)
        return cls._create(cls.Created, id=snapshot_id, **fields)

    @property
    def sid(self) -> str:
        return str(self.id)

    @property
    def is_deleted(self) -> bool:
        return self.status == SnapshotStatus.DELETED

    def complete_create(self) -> bool:
        if self.status != SnapshotStatus.CREATING:
            return False
        self._create_completed()
        return True

    @event(CreateCompleted)
    def _create_completed(self) -> None:
        self.status = SnapshotStatus.AVAILABLE

    def fail_create(self, reason: str) -> bool:
        if self.status != SnapshotStatus.CREATING:
            return False
        self._create_failed(reason=reason)
        return True

    @event(CreateFailed)
    def _create_failed(self, reason: str) -> None:
        self.status = SnapshotStatus.ERROR

    def update(self, changes: dict[str, Any]) -> None:
        """PUT /snapshots/{id}: name, description (already resolved by the wire)."""
        if changes:
            self._updated(changes=dict(changes))

    @event(Updated)
    def _updated(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            setattr(self, key, value)

    def deletable(self, *, forced: bool = False) -> bool:
        """May move to ``deleting``: ``available`` or ``error``; in a forced cascade delete of
        its volume also ``error_deleting`` (no saga works on a snapshot in these)."""
        allowed = {SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR}
        if forced:
            allowed.add(SnapshotStatus.ERROR_DELETING)
        return self.status in allowed

    def request_delete(self, *, forced: bool = False) -> None:
        if not self.deletable(forced=forced):
            raise InvalidSnapshotError(
                f"Invalid snapshot: Volume Snapshot status must be available or error, "
                f"currently {self.status}."
            )
        self._delete_requested()

    def force_delete(self) -> None:
        """An admin's os-force_delete: to ``deleting`` whatever the status (Cinder skips the
        status condition), also again from ``deleting`` to retry a stuck delete."""
        self._delete_requested()

    def reset_status(self, status: str) -> None:
        """An admin's os-reset_status: the status is set, nothing else happens."""
        if status not in SnapshotStatus.ALL:
            raise InvalidInputError(f"Snapshot status: {status} is invalid.")
        self._status_reset(status=status)

    @event(StatusReset)
    def _status_reset(self, status: str) -> None:
        self.status = status

    @event(DeleteRequested)
    def _delete_requested(self) -> None:
        if self.status != SnapshotStatus.DELETING:
            self.previous_status = self.status
        self.status = SnapshotStatus.DELETING

    def complete_delete(self) -> bool:
        if self.status != SnapshotStatus.DELETING:
            return False
        self._deleted()
        return True

    @event(Deleted)
    def _deleted(self) -> None:
        self.status = SnapshotStatus.DELETED

    def fail_delete(self, reason: str) -> bool:
        if self.status != SnapshotStatus.DELETING:
            return False
        self._delete_failed(reason=reason)
        return True

    @event(DeleteFailed)
    def _delete_failed(self, reason: str) -> None:
        self.status = SnapshotStatus.ERROR_DELETING

    def start_restore(self) -> bool:
        """available → restoring (a revert of its volume); False when not available."""
        if self.status != SnapshotStatus.AVAILABLE:
            return False
        self._restore_started()
        return True

    @event(RestoreStarted)
    def _restore_started(self) -> None:
        self.status = SnapshotStatus.RESTORING

    def end_restore(self) -> bool:
        if self.status != SnapshotStatus.RESTORING:
            return False
        self._restore_ended()
        return True

    @event(RestoreEnded)
    def _restore_ended(self) -> None:
        self.status = SnapshotStatus.AVAILABLE
