"""What the migrate saga does next. Pure; the runner in the sagas service does the I/O.

Steps: on ``MigrationStarted`` mark ``migrating`` and copy the data to the destination
(verified by checksum), then record ``MigrationCompleted`` with the new host; on
``MigrationCompleted`` remove the old copy (idempotent, so a redelivery is harmless).
Compensation: a failed copy → ``MigrationFailed`` (``migration_status: error``, status back
from maintenance); the driver removes its partial copy itself.
"""

from __future__ import annotations

from cinderblock.domain.pending import Kind
from cinderblock.domain.volume import Volume


def migration_to_run(volume: Volume | None, request_version: int) -> str | None:
    """The destination to copy to, or None when this migration is already settled."""
    if volume is None or volume.host is None:
        return None
    pending = volume.pending_at(Kind.MIGRATION, request_version)
    return pending.payload.destination if pending is not None else None
