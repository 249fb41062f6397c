"""The contract every storage backend fulfils: pools, errors and the VolumeDriver protocol."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cinderblock.domain.exports import connector_identity
from cinderblock.drivers.encryption import EncryptionHeader
from cinderblock.drivers.errors import GIB as GIB  # the port's names, importable from here
from cinderblock.drivers.errors import BackendError as BackendError
from cinderblock.drivers.errors import CapacityError as CapacityError
from cinderblock.drivers.errors import DriverError as DriverError
from cinderblock.drivers.errors import ExportConflictError as ExportConflictError

ImageWriter = Callable[[Path, int, int], Awaitable[str]]
"""How ``reimage_volume`` gets an image's bytes: ``write(file, start, limit)`` writes them
into ``file`` from offset ``start`` (at most ``limit`` bytes, zeros need not be written) and
returns their sha256 (hex)."""

MULTIATTACH_SUFFIX = "multiattach"

before_verify: ContextVar[Callable[[Path], None] | None] = ContextVar(
    "cinderblock_drivers_before_verify", default=None
)
"""Fault-injection hook of copying steps (migrate, snapshot, revert): when set in the caller's
context, a
driver calls it with the path of each fresh copy, in a worker thread, after the copy is
written and synced and before its checksum is verified. Only tests and the fault
injector set it; it must not change the outcome of a correct driver except through the
verification catching what it did."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VOLUME_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def check_volume_id(volume_id: str) -> None:
    """Raise ValueError unless `volume_id` is safe to use inside a file name."""
    if not _VOLUME_ID.fullmatch(volume_id):
        raise ValueError(f"volume id {volume_id!r} is not a safe file name")


def check_snapshot_id(snapshot_id: str) -> None:
    """Raise ValueError unless `snapshot_id` is safe to use inside a file name."""
    if not _VOLUME_ID.fullmatch(snapshot_id):
        raise ValueError(f"snapshot id {snapshot_id!r} is not a safe file name")


def check_export_id(export_id: str) -> None:
    """Raise ValueError unless `export_id` is safe to use as a file name."""
    if not _VOLUME_ID.fullmatch(export_id):
        raise ValueError(f"export id {export_id!r} is not a safe file name")


def check_size_gb(size_gb: int) -> None:
    """Raise ValueError unless `size_gb` is a positive whole number of GiB."""
    if isinstance(size_gb, bool) or not isinstance(size_gb, int) or size_gb < 1:
        raise ValueError(f"size must be a positive whole number of GiB, got {size_gb!r}")


@dataclass(frozen=True)
class PoolConfig:
    """One pool of one backend on one host, with its capacity.

    Raises:
        ValueError: a name is empty or holds a character outside ``[A-Za-z0-9._-]``,
            or the capacity is negative.
    """

    host: str
    backend: str
    pool: str
    capacity_gb: int
    multiattach: bool = False

    def __post_init__(self) -> None:
        for field, value in (("host", self.host), ("backend", self.backend), ("pool", self.pool)):
            if not _NAME.fullmatch(value):
                raise ValueError(f"pool {field} {value!r} must match [A-Za-z0-9][A-Za-z0-9._-]*")
        if isinstance(self.capacity_gb, bool) or not isinstance(self.capacity_gb, int):
            raise ValueError(f"pool capacity must be an int, got {self.capacity_gb!r}")
        if self.capacity_gb < 0:
            raise ValueError(f"pool capacity must be >= 0 GiB, got {self.capacity_gb}")

    @property
    def location(self) -> str:
        """Cinder's pool address, ``host@backend#pool``."""
        return f"{self.host}@{self.backend}#{self.pool}"

    @classmethod
    def parse(cls, spec: str) -> PoolConfig:
        """Read ``host@backend#pool:capacity_gb[:multiattach]``.

        Example: ``PoolConfig.parse("node1@file-b#pool0:200:multiattach")``.
        """
        rest, _, last = spec.strip().rpartition(":")
        multiattach = last == MULTIATTACH_SUFFIX
        if multiattach:
            rest, _, last = rest.rpartition(":")
        host, at, backend_pool = rest.partition("@")
        backend, hash_, pool = backend_pool.partition("#")
        if not (at and hash_ and last):
            raise ValueError(
                f"pool spec {spec!r} must look like host@backend#pool:capacity_gb[:multiattach]"
            )
        try:
            capacity_gb = int(last)
        except ValueError:
            raise ValueError(
                f"pool spec {spec!r}: capacity {last!r} is not a whole number"
            ) from None
        return cls(host, backend, pool, capacity_gb, multiattach)


@dataclass(frozen=True)
class PoolStats:
    """Capacity figures of one pool, as a scheduler sees them (whole GiB)."""

    location: str
    capacity_gb: int
    allocated_gb: int
    free_gb: int
    multiattach: bool


@dataclass(frozen=True)
class ExportSpec:
    """One export of a volume to one connector (Cinder's ``create_export`` and
    ``initialize_connection`` together).

    Attributes:
        export_id: names the export: the attachment's id (attachments API), or the key
            the domain derives from the connector (legacy ``os-initialize_connection``).
        connector: what the host sent (os-brick's connector properties; a string or None
            from legacy callers).
        access_mode: ``rw`` or ``ro``, reported in the connection info.
        encrypted: reported in the connection info.
        multiattach: the volume may be exported to several connectors at once.
        instance_uuid: the server the export is for, if known: a non-multiattach volume
            may be exported to a second host for the same server (Nova's live migration).
    """

    export_id: str
    connector: Mapping[str, Any] | str | None
    access_mode: str = "rw"
    encrypted: bool = False
    multiattach: bool = False
    instance_uuid: str | None = None

    @property
    def identity(self) -> str | None:
        """Who the connector is: its ``host``, else its ``initiator`` (a string connector
        is its own identity; None or an empty object: unknown)."""
        return connector_identity(self.connector)


@runtime_checkable
class VolumeDriver(Protocol):
    """What the sagas service asks of a storage backend.

    Every step is idempotent by outcome and carries the saga's ``step_key``
    (for logs and fault accounting): a redelivered step does no harm.
    """

    async def create_volume(
        self,
        volume_id: str,
        size_gb: int,
        *,
        location: str | None,
        step_key: str,
        header: EncryptionHeader | None = None,
    ) -> str:
        """Create the volume; return its location ``host@backend#pool``. With ``header``
        the image starts with that encryption header (`encryption`).

        With ``location=None`` the pool with the most free capacity that fits is
        chosen. If the volume already exists with this size, return its location.

        Raises:
            CapacityError: no (or not the given) pool has room.
            BackendError: the backend failed, or the volume exists with another size.
        """
        ...

    async def create_volume_from_snapshot(
        self,
        volume_id: str,
        snapshot_id: str,
        size_gb: int,
        *,
        location: str,
        step_key: str,
        header: EncryptionHeader | None = None,
    ) -> str:
        """Create the volume in the snapshot's pool ``location`` with the snapshot's bytes
        (a sparse copy, verified by checksum), grown with zeros to ``size_gb``; with
        ``header`` its encryption header is rewritten for the new key. Return ``location``.
        A redelivery finds the copy made and only finishes it (never copies twice).

        Raises:
            CapacityError: the pool cannot hold the volume.
            BackendError: the snapshot file is missing (deleted meanwhile) or larger than
                ``size_gb``, the copy failed or did not verify (nothing is left).
        """
        ...

    async def create_cloned_volume(
        self,
        volume_id: str,
        source_volid: str,
        size_gb: int,
        *,
        location: str,
        step_key: str,
        header: EncryptionHeader | None = None,
    ) -> str:
        """As ``create_volume_from_snapshot``, from the volume ``source_volid`` in
        ``location`` (a clone); no other step of the source runs during the copy."""
        ...

    async def extend_volume(
        self, volume_id: str, location: str, new_size_gb: int, *, step_key: str
    ) -> None:
        """Grow the volume to ``new_size_gb``, keeping its data; no-op at that size.

        Raises:
            CapacityError: the pool cannot hold the growth.
            BackendError: the backend failed, the volume is missing, or it would shrink.
        """
        ...

    async def delete_volume(self, volume_id: str, location: str, *, step_key: str) -> None:
        """Delete the volume and its data; succeed if it is already gone.

        Raises:
            BackendError: the backend failed.
        """
        ...

    async def unmanage_volume(self, volume_id: str, location: str, *, step_key: str) -> None:
        """Stop managing the volume, leaving its data on the backend.

        Raises:
            BackendError: the backend failed or the volume is missing.
        """
        ...

    async def migrate_volume(
        self, volume_id: str, source: str, destination: str, *, step_key: str
    ) -> str:
        """Copy the volume from ``source`` (``host@backend#pool``) to ``destination`` and
        return the destination location; the source copy is left in place (delete it
        with ``delete_volume(volume_id, source)`` once the move is recorded).

        ``destination`` is a pool (``host@backend#pool``) or a backend (``host@backend``):
        then the pool of that backend with the most free space that fits is chosen,
        preferring one that already holds a copy of the volume. The copy keeps holes,
        is synced and verified by checksum before it gets its final name. If the
        destination already holds a copy with the same size and checksum, it is kept
        and its location returned; a copy that differs is replaced.

        Raises:
            CapacityError: the destination pool (or no pool of the backend) has room.
            BackendError: the destination is unknown or is the source pool, the source
                file is missing, the copy failed, or its checksum did not match (the
                partial copy is removed).
        """
        ...

    async def reencrypt_volume(
        self,
        volume_id: str,
        source: str,
        destination: str,
        *,
        target: EncryptionHeader | None,
        step_key: str,
    ) -> str:
        """Copy the volume's payload (its bytes behind its own header) behind ``target``'s
        header (None: no header) into the pool ``destination`` and return it. When
        ``destination`` is the source's pool the new image replaces the old one in one
        rename; otherwise the source stays (delete it once the retype is recorded).

        Raises:
            NoRoomForDataError: the payload does not fit behind the new header (nothing
                was written).
            CapacityError: the destination pool cannot hold the copy.
            BackendError: the source is missing, the copy failed or did not verify (the
                source is untouched, no copy is left).
        """
        ...

    async def create_snapshot(
        self, volume_id: str, snapshot_id: str, location: str, *, step_key: str
    ) -> None:
        """Copy the volume's current bytes at ``location`` into the snapshot, in the same
        pool: sparse, synced and verified by checksum against the volume before it gets
        its name; no write, extend or revert of the volume interleaves with the copy. The
        snapshot takes the volume's size from the pool's capacity. If the snapshot
        already exists with the volume's size, nothing is done.

        Raises:
            CapacityError: the pool cannot hold the snapshot.
            BackendError: the volume file is missing, the snapshot exists with another
                size, the copy failed, or its checksum did not match (nothing is left).
        """
        ...

    async def delete_snapshot(self, snapshot_id: str, location: str, *, step_key: str) -> None:
        """Delete the snapshot and release its space; succeed if it is already gone.

        Raises:
            BackendError: the backend failed (its ``volume_id`` is the snapshot id).
        """
        ...

    async def revert_to_snapshot(
        self, volume_id: str, snapshot_id: str, location: str, *, step_key: str
    ) -> None:
        """Give the volume at ``location`` the snapshot's bytes again (the snapshot stays).

        The reverted image is built as a verified copy of the snapshot and renamed over
        the volume's image in one step, so the volume never holds a half-reverted image;
        while the copy exists it takes the snapshot's size from the pool. If the volume
        already holds the snapshot's bytes, nothing is done.

        Raises:
            CapacityError: the pool cannot hold the temporary copy.
            BackendError: the volume or snapshot file is missing, their sizes differ, the
                copy failed, or its checksum did not match (the volume is untouched).
        """
        ...

    async def reimage_volume(
        self, volume_id: str, location: str, *, write: ImageWriter, step_key: str
    ) -> str:
        """Replace the volume's bytes with an image's: ``write`` fills a new file of the
        volume's size (behind the volume's encryption header, which is kept), which is
        synced and renamed over the volume; return what ``write`` returned. A failure
        leaves the volume as it was. Doing it again writes the same bytes again.

        Raises:
            CapacityError: the pool cannot hold the temporary copy.
            BackendError: the volume file is missing or file I/O failed; whatever
                ``write`` raises passes through.
        """
        ...

    async def initialize_connection(
        self, volume_id: str, location: str, spec: ExportSpec, *, step_key: str
    ) -> dict[str, Any]:
        """Export the volume at ``location`` to ``spec.connector`` and return Cinder's
        connection info (``driver_volume_type``, ``data``, ``enforce_multipath``). The
        export is recorded on the backend under ``spec.export_id``; asking again for the
        same export and connector returns what was recorded (never exports twice).

        Raises:
            ExportConflictError: the volume is not multiattach and is exported to another
                connector (another host for another server); nothing changes.
            BackendError: the volume is missing or the export could not be written.
        """
        ...

    async def terminate_connection(
        self, volume_id: str, location: str, export_id: str, *, step_key: str
    ) -> bool:
        """Remove the export ``export_id`` of the volume; True if there was one. An export
        already gone is success.

        Raises:
            BackendError: the export could not be removed.
        """
        ...

    def exports(self, volume_id: str, location: str) -> list[dict[str, Any]]:
        """The volume's exports on the backend of ``location`` (their records: export_id,
        connector, identity, instance_uuid, access_mode, connection_info), by export id."""
        ...

    async def checksum(self, volume_id: str, location: str) -> str:
        """Hex content digest of the volume's bytes at ``location`` (its whole size, holes
        as zeros): equal for equal bytes, whatever the layout of holes. The file driver's
        is sha256 over the sha256 of each 1 MiB chunk (`copying.content_digest`).

        Raises:
            BackendError: unknown pool, missing volume file, or a read failed.
        """
        ...

    def volume_path(self, volume_id: str, location: str) -> Path:
        """Where the volume's data lives on this host (for connectors and checks)."""
        ...

    def snapshot_path(self, snapshot_id: str, location: str) -> Path:
        """Where the snapshot's data lives on this host (for checks)."""
        ...

    def pools(self) -> list[PoolStats]:
        """Capacity figures of every pool, in configuration order."""
        ...
