"""os-unmanage: the volume leaves management while its data stays on the backend.

A mixin of Volume (explicit events with ``apply``, as ``attachments``)."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain.errors import InvalidVolumeError
from cinderblock.domain.pending import Kind
from cinderblock.domain.status import DELETABLE, NOT_MIGRATING, AttachStatus, Status

UNMANAGING = (Status.UNMANAGING, Status.ERROR_MANAGING_DELETING)


class Unmanaging:
    status: Status
    attach_status: AttachStatus
    migration_status: str | None
    host: str | None

    class UnmanageRequested(Aggregate.Event):
        previous_status: str

        def apply(self, volume: Any) -> None:
            volume.previous_status = Status(self.previous_status)
            was_managing = self.previous_status == Status.ERROR_MANAGING
            volume.status = Status.ERROR_MANAGING_DELETING if was_managing else Status.UNMANAGING
            volume._end(Kind.EXTEND)

    class Unmanaged(Aggregate.Event):
        def apply(self, volume: Any) -> None:
            volume.status = Status.DELETED

    class UnmanageFailed(Aggregate.Event):
        reason: str

        def apply(self, volume: Any) -> None:
            volume.status = Status.ERROR_UNMANAGING

    def request_unmanage(self) -> bool:
        """True when the volume is gone at once (never placed), False when a saga must
        finish it."""
        if self.host is None:  # never placed: gone at once, no status checks (Cinder)
            self._trigger(self.UnmanageRequested, previous_status=self.status.value)
            self._trigger(self.Unmanaged)
            return True
        if getattr(self, "encryption_key_id", None) is not None:
            raise InvalidVolumeError("Unmanaging encrypted volumes is not supported.")
        if (
            self.status not in DELETABLE
            or self.attach_status == AttachStatus.ATTACHED
            or self.migration_status not in NOT_MIGRATING
            or getattr(self, "snapshot_ids", None)
        ):
            raise InvalidVolumeError(
                "Volume status must be available or error or error_restoring or "
                "error_extending or error_managing and must not be migrating, attached, "
                f"belong to a group or have snapshots to be unmanaged, currently {self.status}."
            )
        self._trigger(self.UnmanageRequested, previous_status=self.status.value)
        return False

    def complete_unmanage(self) -> bool:
        if self.status not in UNMANAGING:
            return False
        self._trigger(self.Unmanaged)
        return True

    def fail_unmanage(self, reason: str) -> bool:
        if self.status not in UNMANAGING:
            return False
        self._trigger(self.UnmanageFailed, reason=reason)
        return True

    def _trigger(self, event_class: type[Aggregate.Event], **kwargs: Any) -> None:
        self.trigger_event(event_class, **kwargs)  # type: ignore[attr-defined]
