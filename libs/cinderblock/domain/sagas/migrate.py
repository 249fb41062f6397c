"""What the migrate saga does next. Pure; the runner in the sagas service does the I/O.

Steps: on ``MigrationStarted`` mark ``migrating`` and copy the data to the destination
(verified by checksum), then record ``MigrationCompleted`` with the new host; on
``MigrationCompleted`` remove the old copy (idempotent, so a redelivery is harmless).
Compensation: a failed copy → ``MigrationFailed`` (``migration_status: error``, status back
from maintenance); the driver removes its partial copy itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from cinderblock.domain.pending import Kind
from cinderblock.domain.placement import backend_of
from cinderblock.domain.volume import Volume


def migration_to_run(volume: Volume | None, request_version: int) -> str | None:
    """The destination to copy to, or None when this migration is already settled."""
    if volume is None or volume.host is None:
        return None
    pending = volume.pending_at(Kind.MIGRATION, request_version)
    return pending.payload.destination if pending is not None else None


def partial_copies(locations: Iterable[str], destination: str, host: str | None) -> list[str]:
    """On ``MigrationFailed``: the pools a copy verified at the destination may have been
    left in (every pool of the destination, a backend or a pool, but the one the volume
    lives in); none when the volume has no host."""
    if host is None:
        return []
    return [
        location
        for location in locations
        if destination in (location, backend_of(location)) and location != host
    ]
