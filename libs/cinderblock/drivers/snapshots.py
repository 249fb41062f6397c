"""The file driver's snapshots: full, sparse, verified copies of a volume's image.

A snapshot of a volume is ``snapshot-<id>.img`` in the volume's pool directory, next to
``volume-<id>.img``: an independent copy (no copy-on-write), so it takes the volume's
apparent size from the pool's capacity, and the startup scan counts it. A revert builds
the reverted image as a verified copy of the snapshot under the volume's temp name and
renames it over the volume's image, so the volume holds either its old bytes or all of
the snapshot's.

Locks: a volume's lock (shared with the driver's other steps) is held for a whole
snapshot or revert of it, then a snapshot's lock; ``delete_snapshot`` takes only the
snapshot's lock. Always in that order, so they cannot deadlock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from cinderblock.drivers import imagefiles, migration, sources
from cinderblock.drivers.base import (
    BackendError,
    PoolConfig,
    check_size_gb,
    check_snapshot_id,
    check_volume_id,
)
from cinderblock.drivers.encryption import EncryptionHeader
from cinderblock.drivers.ledger import KeyedLocks, Ledger

log = logging.getLogger("cinderblock.drivers.file")

PoolLookup = Callable[[str, str, str], PoolConfig]
"""``(operation, volume_id, location) -> PoolConfig``, raising BackendError when unknown."""


class Snapshots:
    """Snapshot steps of a FileDriver, on its ledger, volume locks and pool directories.

    Args:
        ledger: the driver's capacity accounting.
        volume_locks: the driver's per-volume locks.
        pool: looks a location up (the driver's, so errors read the same).
        pool_dir: the directory of a pool.
    """

    def __init__(
        self,
        ledger: Ledger,
        volume_locks: KeyedLocks,
        pool: PoolLookup,
        pool_dir: Callable[[PoolConfig], Path],
    ) -> None:
        self._ledger = ledger
        self._volume_locks = volume_locks
        self._snapshot_locks = KeyedLocks()
        self._pool = pool
        self._pool_dir = pool_dir

    def path(self, snapshot_id: str, location: str) -> Path:
        check_snapshot_id(snapshot_id)
        pool = self._pool("snapshot_path", snapshot_id, location)
        return self._pool_dir(pool) / imagefiles.snapshot_name(snapshot_id)

    def _files(
        self, operation: str, volume_id: str, snapshot_id: str, location: str
    ) -> tuple[PoolConfig, Path, Path]:
        """The pool, the volume's image and the snapshot's copy there (ids checked)."""
        check_volume_id(volume_id)
        check_snapshot_id(snapshot_id)
        pool = self._pool(operation, volume_id, location)
        pool_dir = self._pool_dir(pool)
        return (
            pool,
            pool_dir / imagefiles.image_name(volume_id),
            pool_dir / imagefiles.snapshot_name(snapshot_id),
        )

    async def create(
        self, volume_id: str, snapshot_id: str, location: str, *, step_key: str
    ) -> None:
        """Copy the volume into the snapshot (see ``VolumeDriver.create_snapshot``)."""
        pool, volume, snapshot = self._files("snapshot", volume_id, snapshot_id, location)
        ctx = _ctx(volume_id, snapshot_id, "snapshot", step_key, location)
        async with self._volume_locks.hold(volume_id), self._snapshot_locks.hold(snapshot_id):
            size = await _size_on_disk("snapshot", volume_id, volume)
            if size is None:
                raise BackendError("snapshot", volume_id, f"volume file {volume} not found")
            existing = await _size_on_disk("snapshot", volume_id, snapshot)
            if existing == size:
                log.info("snapshot %s already exists", snapshot_id, extra=ctx)
                return
            if existing is not None:
                reason = f"snapshot {snapshot_id} exists with {existing} bytes, not {size}"
                raise BackendError("snapshot", volume_id, reason)
            await self._ledger.reserve(pool, "snapshot", volume_id, size)
            try:
                digest = await migration.copy_verified(
                    volume_id, volume, snapshot, ctx, operation="snapshot"
                )
            except BaseException:
                await self._ledger.release(location, size)
                raise
        log.info(
            "snapshot %s of volume %s taken, sha256 %s", snapshot_id, volume_id, digest, extra=ctx
        )

    async def create_volume(
        self,
        volume_id: str,
        snapshot_id: str,
        size_gb: int,
        location: str,
        *,
        step_key: str,
        header: EncryptionHeader | None,
    ) -> None:
        """A new volume from the snapshot, in its pool (see
        ``VolumeDriver.create_volume_from_snapshot``). The snapshot's lock keeps a delete of
        it from running meanwhile; a snapshot deleted before finds no file (BackendError)."""
        check_size_gb(size_gb)
        pool, volume, snapshot = self._files("create", volume_id, snapshot_id, location)
        ctx = _ctx(volume_id, snapshot_id, "create", step_key, location)
        async with self._volume_locks.hold(volume_id), self._snapshot_locks.hold(snapshot_id):
            await sources.create_from(
                self._ledger, pool, volume_id, snapshot, volume, size_gb, header=header, ctx=ctx
            )

    async def delete(self, snapshot_id: str, location: str, *, step_key: str) -> None:
        """Remove the snapshot and release its space; succeed if it is already gone."""
        check_snapshot_id(snapshot_id)
        pool = self._pool("delete_snapshot", snapshot_id, location)
        path = self._pool_dir(pool) / imagefiles.snapshot_name(snapshot_id)
        ctx = {**_ctx("", snapshot_id, "delete_snapshot", step_key, location), "volume_id": None}
        async with self._snapshot_locks.hold(snapshot_id):
            try:
                freed = await asyncio.to_thread(imagefiles.remove, path)
            except OSError as err:
                log.warning("delete_snapshot failed: %s", err, extra=ctx)
                reason = f"cannot remove {path}: {err}"
                raise BackendError("delete_snapshot", snapshot_id, reason) from err
            if freed is None:
                log.info("snapshot %s already gone", snapshot_id, extra=ctx)
                return
            await self._ledger.release(location, freed)
        log.info("deleted snapshot %s", snapshot_id, extra=ctx)

    async def revert(
        self, volume_id: str, snapshot_id: str, location: str, *, step_key: str
    ) -> None:
        """Put the snapshot's bytes back into the volume (see
        ``VolumeDriver.revert_to_snapshot``)."""
        pool, volume, snapshot = self._files("revert", volume_id, snapshot_id, location)
        ctx = _ctx(volume_id, snapshot_id, "revert", step_key, location)
        async with self._volume_locks.hold(volume_id), self._snapshot_locks.hold(snapshot_id):
            size = await _size_on_disk("revert", volume_id, snapshot)
            if size is None:
                raise BackendError("revert", volume_id, f"snapshot file {snapshot} not found")
            current = await _size_on_disk("revert", volume_id, volume)
            if current is None:
                raise BackendError("revert", volume_id, f"volume file {volume} not found")
            if current != size:
                reason = f"volume has {current} bytes, snapshot {snapshot_id} has {size}"
                raise BackendError("revert", volume_id, reason)
            ours, theirs = await migration.checksums("revert", volume_id, volume, snapshot)
            if ours == theirs:
                log.info("volume %s already holds snapshot %s", volume_id, snapshot_id, extra=ctx)
                return
            await self._ledger.reserve(pool, "revert", volume_id, size)  # the temp copy
            try:
                await migration.copy_verified(
                    volume_id, snapshot, volume, ctx, operation="revert", expected=theirs
                )
            finally:  # installed, it replaced an image of the same size; else it is gone
                await self._ledger.release(location, size)
        log.info(
            "reverted volume %s to snapshot %s, sha256 %s",
            volume_id,
            snapshot_id,
            theirs,
            extra=ctx,
        )


def _ctx(
    volume_id: str, snapshot_id: str, action: str, step_key: str, location: str
) -> dict[str, str]:
    """Log extras of a snapshot step (``delete_snapshot`` knows no volume: None there)."""
    return {
        "volume_id": volume_id,
        "snapshot_id": snapshot_id,
        "action": action,
        "step_key": step_key,
        "location": location,
    }


async def _size_on_disk(operation: str, volume_id: str, path: Path) -> int | None:
    try:
        return await asyncio.to_thread(imagefiles.apparent_size, path)
    except OSError as err:
        raise BackendError(operation, volume_id, f"cannot stat {path}: {err}") from err
