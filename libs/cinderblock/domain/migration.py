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

__all__ = ["HELD", "Migration", "backend_of"]

# Statuses a migration puts a volume in, and hands back when it ends.
HELD = (Status.MAINTENANCE, Status.RETYPING)


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
        host: str
        previous_host: str

        def apply(self, volume: Any) -> None:
            volume.host = self.host
            volume.migration_status = "success"
            if volume.status in HELD:
                volume.status = volume.previous_status or Status.AVAILABLE
            volume._end(Kind.MIGRATION)

    class MigrationFailed(Aggregate.Event):
        reason: str
        destination: str

        def apply(self, volume: Any) -> None:
            volume.migration_status = "error"
            if volume.status in HELD:
                volume.status = volume.previous_status or Status.AVAILABLE
            volume._end(Kind.MIGRATION)

    def start_migration(
        self, destination: str, *, force_host_copy: bool, lock_volume: bool
    ) -> None:
        """Checks of Cinder's conditional update; the destination backend was validated by
        the caller against the configured services."""
        if self.status not in (Status.AVAILABLE, Status.IN_USE):
            raise InvalidVolumeError(
                f"Volume {self.vid} status must be available or in-use to migrate, "
                f"currently {self.status}."
            )
        if self.migration_status not in NOT_MIGRATING:
            raise InvalidVolumeError(f"Volume {self.vid} is already being migrated.")
        if self.host is None:
            raise InvalidVolumeError(f"Volume {self.vid} has no host: it cannot be migrated.")
        if getattr(self, "snapshot_ids", None):
            raise InvalidVolumeError(f"Volume {self.vid} has snapshots: it cannot be migrated.")
        if self.host is not None and destination in (self.host, backend_of(self.host)):
            raise InvalidVolumeError("Destination host must be different than the current host.")
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
            self.MigrationCompleted,
            host=new_host,  # type: ignore[attr-defined]
            previous_host=pending.payload.source,
        )

    def fail_migration(self, request_version: int, reason: str) -> None:
        pending = self.migration_pending_for(request_version)
        self._fire(
            self.MigrationFailed,
            reason=reason,  # type: ignore[attr-defined]
            destination=pending.payload.destination,
        )

    def _fire(self, event_class: type[Aggregate.Event], **kwargs: Any) -> None:
        self.trigger_event(event_class, **kwargs)  # type: ignore[attr-defined]
