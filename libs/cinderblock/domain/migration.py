"""os-migrate_volume: move a volume's data to another backend, verified, then switch its
host. A mixin of Volume; the migrate saga drives the steps (copy, switch, remove the old
copy) and every step is an event, so a crash at any point resumes or compensates."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain.errors import InvalidVolumeError
from cinderblock.domain.pending import Kind, MigrationPayload, PendingOperation
from cinderblock.domain.placement import backend_of
from cinderblock.domain.status import NOT_MIGRATING, Status

__all__ = ["HELD", "MIGRATE_REFUSED", "Migration", "backend_of"]

# Cinder's one answer when its conditional update finds the volume not migratable.
MIGRATE_REFUSED = (
    "Volume {vid} status must be available or in-use, must not be migrating, have "
    "snapshots, be replicated, be part of a group and destination host/cluster must be "
    "different than the current one"
)

# Statuses a migration puts a volume in, and hands back when it ends.
HELD = (Status.MAINTENANCE, Status.RETYPING)


def released_status(recorded: str | None, status: Status, previous: Status | None) -> Status:
    """The status a migration's outcome leads to: the one the event recorded (v2), else the
    held status (maintenance, retyping) handed back to the one before (v1 events)."""
    if recorded is not None:
        return Status(recorded)
    return (previous or Status.AVAILABLE) if status in HELD else status


class Migration:
    status: Status
    previous_status: Status | None
    migration_status: str | None
    host: str | None
    vid: str

    class MigrationStarted(Aggregate.Event):
        destination: str
        force_host_copy: bool
        lock_volume: bool
        previous_status: str

        def apply(self, volume: Any) -> None:
            volume.previous_status = Status(self.previous_status)
            volume.migration_status = "starting"
            if self.lock_volume and volume.status == Status.AVAILABLE:
                volume.status = Status.MAINTENANCE
            volume._begin(Kind.MIGRATION, MigrationPayload(self.destination, volume.host))

    class MigrationCopying(Aggregate.Event):
        def apply(self, volume: Any) -> None:
            volume.migration_status = "migrating"

    class MigrationCompleted(Aggregate.Event):
        """v2 adds ``status``, the status the volume has after (a held status handed
        back). Stored v1 events are upcast with ``status = None``: it follows from the
        volume's statuses then."""

        class_version = 2
        host: str
        previous_host: str
        status: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["status"] = None

        def apply(self, volume: Any) -> None:
            volume.host = self.host
            volume.migration_status = "success"
            volume.status = released_status(self.status, volume.status, volume.previous_status)
            volume._end(Kind.MIGRATION)

    class MigrationFailed(Aggregate.Event):
        """v2 adds ``status`` (the status after), as ``MigrationCompleted``."""

        class_version = 2
        reason: str
        destination: str
        status: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["status"] = None

        def apply(self, volume: Any) -> None:
            volume.migration_status = "error"
            volume.status = released_status(self.status, volume.status, volume.previous_status)
            volume._end(Kind.MIGRATION)

    def start_migration(
        self, destination: str, *, force_host_copy: bool, lock_volume: bool
    ) -> None:
        """Checks of Cinder's conditional update (one message for all, as Cinder's); the
        destination backend was validated by the caller against the configured services."""
        here = (self.host, backend_of(self.host)) if self.host is not None else ()
        if (
            self.status not in (Status.AVAILABLE, Status.IN_USE)
            or self.migration_status not in NOT_MIGRATING
            or self.host is None
            or getattr(self, "snapshot_ids", None)
            or destination in here
        ):
            raise InvalidVolumeError(MIGRATE_REFUSED.format(vid=self.vid))
        self._fire(
            self.MigrationStarted,
            destination=destination,  # type: ignore[attr-defined]
            force_host_copy=force_host_copy,
            lock_volume=lock_volume,
            previous_status=self.status.value,
        )

    def migration_pending_for(self, request_version: int) -> PendingOperation[MigrationPayload]:
        return self.require_pending(Kind.MIGRATION, request_version)  # type: ignore[attr-defined,no-any-return]

    def mark_migration_copying(self, request_version: int) -> bool:
        self.migration_pending_for(request_version)
        if self.migration_status == "migrating":
            return False
        self._fire(self.MigrationCopying)  # type: ignore[attr-defined]
        return True

    def complete_migration(self, request_version: int, new_host: str) -> None:
        pending = self.migration_pending_for(request_version)
        self._fire(
            self.MigrationCompleted,  # type: ignore[attr-defined]
            host=new_host,
            previous_host=pending.payload.source,
            status=released_status(None, self.status, self.previous_status).value,
        )

    def fail_migration(self, request_version: int, reason: str) -> None:
        pending = self.migration_pending_for(request_version)
        self._fire(
            self.MigrationFailed,  # type: ignore[attr-defined]
            reason=reason,
            destination=pending.payload.destination,
            status=released_status(None, self.status, self.previous_status).value,
        )

    def _fire(self, event_class: type[Aggregate.Event], **kwargs: Any) -> None:
        self.trigger_event(event_class, **kwargs)  # type: ignore[attr-defined]
