"""os-retype: a volume changes type in place when its backend suits the new type, or moves
to one that does (migration policy on-demand). A mixin of Volume with explicit events."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain.errors import InvalidInputError, InvalidVolumeError
from cinderblock.domain.pending import Kind, PendingOperation, RetypePayload
from cinderblock.domain.status import NOT_MIGRATING, Status

RETYPE_REFUSED = (
    "Retype needs volume to be in available or in-use state, not be part of an active "
    "migration or a consistency group, requested type has to be different that the one from "
    "the volume, and for in-use volumes front-end qos specs cannot change."
)


def returned_status(recorded: str | None, previous: Status | None) -> Status:
    """The status a retype's outcome leads to: the one the event recorded (v2), else the
    one the volume had before the retype (v1 events)."""
    if recorded is not None:
        return Status(recorded)
    return previous or Status.AVAILABLE


class Retype:
    status: Status
    previous_status: Status | None
    migration_status: str | None
    multiattach: bool
    volume_type_id: str
    volume_type_name: str
    host: str | None
    vid: str

    class RetypeRequested(Aggregate.Event):
        new_type_id: str
        new_type_name: str
        migration_policy: str
        previous_status: str
        previous_multiattach: bool
        new_multiattach: bool
        reservation_id: str

        def apply(self, volume: Any) -> None:
            volume.previous_status = Status(self.previous_status)
            volume.status = Status.RETYPING
            volume.multiattach = self.new_multiattach  # at once, as Cinder does
            volume._begin(
                Kind.RETYPE,
                RetypePayload(
                    new_type_id=self.new_type_id,
                    new_type_name=self.new_type_name,
                    migration_policy=self.migration_policy,
                    previous_multiattach=self.previous_multiattach,
                ),
                self.reservation_id,
            )

    class Retyped(Aggregate.Event):
        """v2 adds ``status``, the status the volume returns to (the one before the
        retype), so a reader needs no earlier event. Stored v1 events are upcast with
        ``status = None``: it follows from the volume's previous status then."""

        class_version = 2
        new_type_id: str
        new_type_name: str
        host: str | None  # set when the data moved to another pool
        previous_host: str | None
        status: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["status"] = None

        def apply(self, volume: Any) -> None:
            volume.volume_type_id = self.new_type_id
            volume.volume_type_name = self.new_type_name
            if self.host is not None:
                volume.host = self.host
                volume.migration_status = "success"
            volume.status = returned_status(self.status, volume.previous_status)
            volume._end(Kind.RETYPE)

    class RetypeFailed(Aggregate.Event):
        """v2 adds ``status`` (the status the volume returns to), as ``Retyped``."""

        class_version = 2
        reason: str
        multiattach: bool  # restored (Cinder leaves the new value: a QUIRK)
        status: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["status"] = None

        def apply(self, volume: Any) -> None:
            volume.multiattach = self.multiattach
            volume.status = returned_status(self.status, volume.previous_status)
            volume._end(Kind.RETYPE)

    def request_retype(
        self,
        new_type_id: str,
        new_type_name: str,
        *,
        new_multiattach: bool,
        migration_policy: str,
        reservation_id: str,
        new_encrypted: bool = False,
    ) -> None:
        """Cinder's API order: the multiattach change (only from available), multiattach
        with encryption, then the conditional update's one refusal."""
        if new_multiattach != self.multiattach and self.status != Status.AVAILABLE:
            raise InvalidInputError(
                "Invalid volume_type passed, retypes affecting multiattach are only allowed "
                "on available volumes, the specified volume however currently has a status "
                f"of: {self.status}."
            )
        if new_multiattach and new_encrypted:
            raise InvalidInputError(
                "Retype requested both encryption and multi-attach, which is not supported."
            )
        if (
            self.status not in (Status.AVAILABLE, Status.IN_USE)
            or self.migration_status not in NOT_MIGRATING
            or new_type_id == self.volume_type_id
        ):
            raise InvalidVolumeError(RETYPE_REFUSED)
        self.trigger_event(  # type: ignore[attr-defined]
            self.RetypeRequested,
            new_type_id=new_type_id,
            new_type_name=new_type_name,
            migration_policy=migration_policy,
            previous_status=self.status.value,
            previous_multiattach=self.multiattach,
            new_multiattach=new_multiattach,
            reservation_id=reservation_id,
        )

    def retype_pending_for(self, request_version: int) -> PendingOperation[RetypePayload]:
        return self.require_pending(Kind.RETYPE, request_version)  # type: ignore[attr-defined,no-any-return]

    def complete_retype(self, request_version: int, new_host: str | None) -> str:
        pending = self.retype_pending_for(request_version)
        moved = new_host if new_host not in (None, self.host) else None
        self.trigger_event(  # type: ignore[attr-defined]
            self.Retyped,
            new_type_id=pending.payload.new_type_id,
            new_type_name=pending.payload.new_type_name,
            host=moved,
            previous_host=self.host if moved else None,
            status=returned_status(None, self.previous_status).value,
        )
        return pending.reservation

    def fail_retype(self, request_version: int, reason: str) -> str:
        pending = self.retype_pending_for(request_version)
        self.trigger_event(  # type: ignore[attr-defined]
            self.RetypeFailed,
            reason=reason,
            multiattach=pending.payload.previous_multiattach,
            status=returned_status(None, self.previous_status).value,
        )
        return pending.reservation
