"""A volume created from a source: a snapshot (``snapshot_id``) or another volume
(``source_volid``, a clone). Cinder's rules for such a create (its ``ExtractVolumeRequestTask``)
and the event that records the source, appended in the create's own save after ``Created``
(as ``EncryptionSet`` is), so the create saga sees it when it reacts to ``Created``.

The source's pool (``source_host``) is recorded with it: the new volume goes there, as
Cinder schedules a volume from a snapshot or a clone to its source's backend.

A mixin of Volume with an explicit event."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain.errors import InvalidInputError, InvalidVolumeError
from cinderblock.domain.snapshot import InvalidSnapshotError
from cinderblock.domain.type_encryption import same_encryption

SNAPSHOT_PROCEED_STATUS = ("available",)
SOURCE_VOLUME_PROCEED_STATUS = ("available", "in-use")


def _quoted(statuses: tuple[str, ...]) -> str:
    return ", ".join(f"'{s}'" for s in statuses)


def check_snapshot_source(status: str) -> None:
    """Only an ``available`` snapshot can be the source of a new volume (400)."""
    if status not in SNAPSHOT_PROCEED_STATUS:
        raise InvalidSnapshotError(
            "Invalid snapshot: Originating snapshot status must be one of "
            f"{_quoted(SNAPSHOT_PROCEED_STATUS)} values"
        )


def check_volume_source(status: str) -> None:
    """Only an ``available`` or ``in-use`` volume can be cloned (400)."""
    if status not in SOURCE_VOLUME_PROCEED_STATUS:
        raise InvalidVolumeError(
            "Unable to create a volume from an originating source volume when its status "
            f"is not one of {_quoted(SOURCE_VOLUME_PROCEED_STATUS)} values"
        )


def size_from_source(size: int | None, source_size: int, *, snapshot: bool) -> int:
    """The new volume's size: the source's when none is given; never smaller (400)."""
    if size is None:
        return source_size
    if size < source_size:
        if snapshot:
            raise InvalidInputError(
                f"Volume size '{size}'GB cannot be smaller than the snapshot size "
                f"{source_size}GB. They must be >= original snapshot size."
            )
        raise InvalidInputError(
            f"Volume size '{size}'GB cannot be smaller than original volume size  "
            f"{source_size}GB. They must be >= original volume size."
        )
    return size


def type_is_compatible(
    source_encryption: dict[str, Any] | None,
    source_backend: str | None,
    requested_encryption: dict[str, Any] | None,
    requested_backend: str | None,
    *,
    volume_services: int,
) -> bool:
    """Cinder's ``API._retype_is_possible`` for a create from a source whose type is not
    the requested one: never across encryptions; with one volume service any type; else
    only when both types name the same ``volume_backend_name``. (Cinder counts only the
    disabled volume services there, a bug: all are counted here.)"""
    if not same_encryption(source_encryption, requested_encryption):
        return False
    if volume_services == 1:
        return True
    return bool(source_backend and requested_backend and source_backend == requested_backend)


def incompatible_type(type_id: str, *, snapshot: bool) -> InvalidInputError:
    """A requested type the source cannot take (Cinder's texts, naming the type's id)."""
    advice = (
        "recommend omitting the type argument"
        if snapshot
        else "either match source volume, or omit type argument"
    )
    return InvalidInputError(
        f"Invalid volume_type provided: {type_id} (requested type is not compatible; {advice})."
    )


class VolumeSource:
    source_snapshot_id: str | None = None
    source_volid: str | None = None
    source_host: str | None = None

    class SourceSet(Aggregate.Event):
        snapshot_id: str | None
        source_volid: str | None
        source_host: str

        def apply(self, volume: Any) -> None:
            volume.source_snapshot_id = self.snapshot_id
            volume.source_volid = self.source_volid
            volume.source_host = self.source_host

    @property
    def from_source(self) -> bool:
        return self.source_snapshot_id is not None or self.source_volid is not None

    def set_source(
        self, *, snapshot_id: str | None, source_volid: str | None, source_host: str
    ) -> None:
        """At create, in the append that creates the volume: exactly one source."""
        if (snapshot_id is None) == (source_volid is None):
            raise InvalidInputError("A volume has one source: a snapshot or a volume.")
        self.trigger_event(  # type: ignore[attr-defined]
            self.SourceSet,
            snapshot_id=snapshot_id,
            source_volid=source_volid,
            source_host=source_host,
        )
