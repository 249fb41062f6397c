"""The Volume aggregate: Cinder's rules for a volume's life, decided here and nowhere else.

Public methods check the rules (decide) and then call a private ``@event`` method that only
assigns state (evolve). Replay runs the private methods again, never the rules.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate, event

from cinderblock.domain.admin import AdminActions
from cinderblock.domain.attachments import Attachments
from cinderblock.domain.attachments_api import AttachmentsApi
from cinderblock.domain.errors import (
    InvalidInputError,
    InvalidVolumeError,
    VolumeStatusError,
)
from cinderblock.domain.migration import Migration
from cinderblock.domain.nova import NovaNotifications
from cinderblock.domain.pending import ExtendPayload, Kind, PendingOperation, PendingOperations
from cinderblock.domain.reimage import Reimage
from cinderblock.domain.retype import Retype
from cinderblock.domain.snapshots import Snapshots
from cinderblock.domain.status import DELETABLE, NOT_MIGRATING, AttachStatus, Status
from cinderblock.domain.unmanage import Unmanaging
from cinderblock.domain.upload import Upload
from cinderblock.domain.user_messages import UserMessages
from cinderblock.domain.volume_encryption import VolumeEncryption
from cinderblock.domain.volume_image import VolumeImage
from cinderblock.domain.volume_source import VolumeSource


class Volume(
    Attachments,
    AttachmentsApi,
    AdminActions,
    Unmanaging,
    Migration,
    Snapshots,
    Retype,
    Upload,
    Reimage,
    NovaNotifications,
    VolumeEncryption,
    VolumeSource,
    VolumeImage,
    UserMessages,
    PendingOperations,
    Aggregate,
):
    """One Cinder volume. Its id is the volume's UUID."""

    class Created(Aggregate.Created):
        project_id: str
        user_id: str
        name: str | None
        description: str | None
        size_gb: int
        availability_zone: str
        volume_type_id: str
        volume_type_name: str
        metadata: dict[str, str]
        bootable: bool
        multiattach: bool

    class CreateCompleted(Aggregate.Event):
        host: str

    class CreateFailed(Aggregate.Event):
        reason: str

    class ExtendRequested(Aggregate.Event):
        new_size_gb: int
        previous_status: str
        reservation_id: str

    class Extended(Aggregate.Event):
        """v2 adds ``previous_size_gb``, the size before the extend, so a consumer (usage,
        history) knows the change from this event alone. Stored v1 events are upcast with
        ``previous_size_gb = None``: it was not recorded then."""

        class_version = 2
        new_size_gb: int
        status: str
        previous_size_gb: int | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["previous_size_gb"] = None

    class ExtendFailed(Aggregate.Event):
        reason: str
        status: str

    class BootableSet(Aggregate.Event):
        bootable: bool

    class Updated(Aggregate.Event):
        changes: dict[str, Any]

    class DeleteRequested(Aggregate.Event):
        previous_status: str
        forced: bool

    class DeleteFailed(Aggregate.Event):
        reason: str

    class Deleted(Aggregate.Event):
        pass

    @event(Created)
    def __init__(
        self,
        project_id: str,
        user_id: str,
        name: str | None,
        description: str | None,
        size_gb: int,
        availability_zone: str,
        volume_type_id: str,
        volume_type_name: str,
        metadata: dict[str, str],
        bootable: bool,
        multiattach: bool,
    ) -> None:
        self.project_id = project_id
        self.user_id = user_id
        self.name = name
        self.description = description
        self.size_gb = size_gb
        self.availability_zone = availability_zone
        self.volume_type_id = volume_type_id
        self.volume_type_name = volume_type_name
        self.metadata = dict(metadata)
        self.bootable = bootable
        self.multiattach = multiattach
        self.status = Status.CREATING
        self.previous_status: Status | None = None
        self.attach_status = AttachStatus.DETACHED
        self.migration_status: str | None = None
        self.host: str | None = None
        self.attachments: dict[str, dict[str, Any]] = {}
        self.admin_metadata: dict[str, str] = {}
        self.image_metadata: dict[str, str] = {}
        self.snapshot_ids: list[str] = []
        # extend, migration, retype, revert, upload, reimage: see domain.pending
        self.pending_operations: dict[str, PendingOperation[Any]] = {}

    @classmethod
    def create(cls, volume_id: Any, **fields: Any) -> Volume:
        """Start a new volume in ``creating``; a saga places it and completes it."""
        if fields["size_gb"] < 1:
            raise InvalidInputError("Volume size must be greater than 0.")
        return cls._create(cls.Created, id=volume_id, **fields)

    # ---------------------------------------------------------------- guards

    @property
    def vid(self) -> str:
        return str(self.id)

    @property
    def is_deleted(self) -> bool:
        return self.status == Status.DELETED

    def _require_status(self, allowed: frozenset[Status], action: str) -> None:
        if self.status not in allowed:
            expected = "available" if Status.AVAILABLE in allowed else sorted(allowed)[0]
            raise VolumeStatusError(self.vid, self.status.value, action=action, expected=expected)

    @property
    def attachment_ids(self) -> list[str]:
        return list(self.attachments)

    def _status_after_work(self) -> Status:
        return Status.IN_USE if self.attachments else Status.AVAILABLE

    # ---------------------------------------------------------------- create

    def complete_create(self, host: str) -> bool:
        """Record that the backend holds the volume. False when already recorded."""
        if self.status != Status.CREATING:
            return False
        self._create_completed(host=host)
        return True

    @event(CreateCompleted)
    def _create_completed(self, host: str) -> None:
        self.host = host
        self.status = Status.AVAILABLE

    def fail_create(self, reason: str) -> bool:
        """Compensation for a failed create: ``error``; the quota stays consumed (Cinder)."""
        if self.status != Status.CREATING:
            return False
        self._create_failed(reason=reason)
        return True

    @event(CreateFailed)
    def _create_failed(self, reason: str) -> None:
        self.status = Status.ERROR

    # ---------------------------------------------------------------- extend

    def request_extend(
        self, new_size_gb: int, *, in_use_allowed: bool, reservation_id: str
    ) -> None:
        """os-extend: size must grow; status ``available``, or ``in-use`` when the caller's
        microversion allows attached extend (3.42)."""
        if new_size_gb <= self.size_gb:
            raise InvalidInputError(
                "New size for extend must be greater than current size. "
                f"(current: {self.size_gb}, extended: {new_size_gb})."
            )
        allowed = {Status.AVAILABLE, Status.IN_USE} if in_use_allowed else {Status.AVAILABLE}
        self._require_status(frozenset(allowed), "extend")
        self._extend_requested(
            new_size_gb=new_size_gb,
            previous_status=self.status.value,
            reservation_id=reservation_id,
        )

    @event(ExtendRequested)
    def _extend_requested(
        self, new_size_gb: int, previous_status: str, reservation_id: str
    ) -> None:
        self.previous_status = Status(previous_status)
        self.status = Status.EXTENDING
        self._begin(Kind.EXTEND, ExtendPayload(new_size_gb), reservation_id)

    def extend_pending_for(self, request_version: int) -> PendingOperation[ExtendPayload]:
        """The pending extend started at ``request_version``, or StaleCommandError."""
        return self.require_pending(Kind.EXTEND, request_version)

    def complete_extend(self, request_version: int) -> str:
        """Backend grew the volume: new size, back to available/in-use. Returns reservation."""
        pending = self.extend_pending_for(request_version)
        self._extended(
            new_size_gb=pending.payload.new_size_gb,
            status=self._status_after_work().value,
            previous_size_gb=self.size_gb,
        )
        return pending.reservation

    @event(Extended)
    def _extended(self, new_size_gb: int, status: str, previous_size_gb: int | None) -> None:
        self.size_gb = new_size_gb
        self.status = Status(status)
        self._end(Kind.EXTEND)

    def fail_extend(self, request_version: int, reason: str, *, restore: bool) -> str:
        """Compensation. ``restore``: no capacity, back to the previous status (not an
        error); otherwise ``error_extending``. Size unchanged. Returns the reservation."""
        pending = self.extend_pending_for(request_version)
        previous = self.previous_status or Status.AVAILABLE
        status = previous if restore else Status.ERROR_EXTENDING
        self._extend_failed(reason=reason, status=status.value)
        return pending.reservation

    @event(ExtendFailed)
    def _extend_failed(self, reason: str, status: str) -> None:
        self.status = Status(status)
        self._end(Kind.EXTEND)

    # -------------------------------------------------------------- bootable

    def set_bootable(self, bootable: bool) -> None:
        """os-set_bootable: any status except ``maintenance``."""
        if self.status == Status.MAINTENANCE:
            raise InvalidVolumeError("Volume status is maintenance.")
        self._bootable_set(bootable=bootable)

    @event(BootableSet)
    def _bootable_set(self, bootable: bool) -> None:
        self.bootable = bootable

    # ---------------------------------------------------------------- update

    def update(self, changes: dict[str, Any]) -> None:
        """PUT /volumes/{id}: name, description, metadata (replaces all user metadata)."""
        if self.status == Status.MAINTENANCE:
            raise InvalidVolumeError("Volume status is maintenance.")
        if changes:
            self._updated(changes=dict(changes))

    @event(Updated)
    def _updated(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            setattr(self, key, dict(value) if key == "metadata" else value)

    # ---------------------------------------------------------------- delete

    def request_delete(self, *, force: bool = False, with_snapshots: bool = False) -> bool:
        """DELETE /volumes/{id}. Returns True when the volume is gone at once (never placed),
        False when a saga must remove it from its backend. ``with_snapshots``: a cascade
        (``Snapshots.request_delete_cascade``) checked the snapshots and deletes them too."""
        if self.host is None:  # never placed: gone at once, no status checks (Cinder)
            self._delete_requested(previous_status=self.status.value, forced=force)
            self._deleted()
            return True
        if not force and self.status not in DELETABLE:
            raise InvalidVolumeError(
                "Volume status must be available or error or error_restoring or "
                "error_extending or error_managing and must not be migrating, attached, "
                "belong to a group, have snapshots, awaiting a transfer, or be disassociated "
                "from snapshots after volume transfer."
            )
        if (
            self.attach_status == AttachStatus.ATTACHED
            or self.migration_status not in NOT_MIGRATING
        ):
            raise InvalidVolumeError("Volume must not be attached or migrating to be deleted.")
        if self.snapshot_ids and not with_snapshots:
            raise InvalidVolumeError(
                f"Volume {self.vid} has {len(self.snapshot_ids)} snapshot(s): delete them first."
            )
        self._delete_requested(previous_status=self.status.value, forced=force)
        return False

    @event(DeleteRequested)
    def _delete_requested(self, previous_status: str, forced: bool) -> None:
        self.previous_status = Status(previous_status)
        self.status = Status.DELETING
        self._end(Kind.EXTEND)  # a late extend outcome must not revive the volume

    def complete_delete(self) -> bool:
        if self.status != Status.DELETING:
            return False
        self._deleted()
        return True

    @event(Deleted)
    def _deleted(self) -> None:
        self.status = Status.DELETED

    def fail_delete(self, reason: str) -> bool:
        if self.status != Status.DELETING:
            return False
        self._delete_failed(reason=reason)
        return True

    @event(DeleteFailed)
    def _delete_failed(self, reason: str) -> None:
        self.status = Status.ERROR_DELETING
