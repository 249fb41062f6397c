"""What the migrate saga does next. Pure; the runner in the sagas service does the I/O.

Steps: on ``MigrationStarted`` the scheduler's check first: the destination (a backend or
one of its pools) must hold a pool the volume's type and multiattach flag suit and the size
fits in (the one placement rule, ``choose_pool``, as create and retype use); then mark
``migrating`` and copy the data into that pool (verified by checksum), then record
``MigrationCompleted`` with the new host; on ``MigrationCompleted`` remove the old copy
(idempotent, so a redelivery is harmless).
Compensation: a destination the type's rules refuse, or a failed copy → ``MigrationFailed``
(``migration_status: error``, status back from maintenance, host unchanged); the driver
removes its partial copy itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cinderblock.domain.pending import Kind
from cinderblock.domain.placement import Pool, backend_of, choose_pool
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_type import VolumeType


def migration_to_run(volume: Volume | None, request_version: int) -> str | None:
    """The destination to copy to, or None when this migration is already settled."""
    if volume is None or volume.host is None:
        return None
    pending = volume.pending_at(Kind.MIGRATION, request_version)
    return pending.payload.destination if pending is not None else None


@dataclass(frozen=True)
class MigrationTarget:
    """Where the copy goes (``pool``), or why no pool of the destination may take the
    volume (``refusal``, Cinder's scheduler's NoValidBackend)."""

    pool: str | None = None
    refusal: str | None = None


def in_destination(location: str, destination: str, host: str | None) -> bool:
    """Whether a migration to ``destination`` (a backend, or one of its pools) may copy
    into the pool at ``location``: the volume's own pool (``host``) is never one."""
    return destination in (location, backend_of(location)) and location != host


def choose_migration_target(
    volume: Volume,
    destination: str,
    volume_type: VolumeType | None,
    pools: Sequence[Pool],
    made: Iterable[str] = (),
) -> MigrationTarget:
    """Cinder's ``backend_passes_filters`` for a migration: among the destination's pools,
    the one placement chooses for the volume's type, multiattach flag and size
    (``made``: the destination pools already holding a copy, kept as create keeps them).
    A destination the type's filters refuse (another ``volume_backend_name``, no
    multiattach, no room, no such pool) is refused whatever ``force_host_copy`` says."""
    candidates = [p for p in pools if in_destination(p.location, destination, volume.host)]
    pool = choose_pool(candidates, volume_type, volume.size_gb, volume.multiattach, keep=list(made))
    if pool is None:
        return MigrationTarget(
            refusal=(
                f"No valid backend was found. Cannot place volume {volume.vid} on {destination}."
            )
        )
    return MigrationTarget(pool=pool)


def partial_copies(locations: Iterable[str], destination: str, host: str | None) -> list[str]:
    """On ``MigrationFailed``: the pools a copy verified at the destination may have been
    left in (every pool of the destination, a backend or a pool, but the one the volume
    lives in); none when the volume has no host."""
    if host is None:
        return []
    return [location for location in locations if in_destination(location, destination, host)]
