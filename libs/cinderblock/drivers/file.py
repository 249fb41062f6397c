"""A real file-backed driver: each volume is a sparse image file in a pool directory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cinderblock.drivers import (
    copying,
    encryption,
    imagefiles,
    migration,
    reimage,
    snapshots,
    sources,
)
from cinderblock.drivers.base import (
    GIB,
    BackendError,
    ExportSpec,
    PoolConfig,
    PoolStats,
    check_size_gb,
    check_volume_id,
)
from cinderblock.drivers.connections import Connections
from cinderblock.drivers.connections import local_connection_info as local_connection_info
from cinderblock.drivers.encryption import EncryptionHeader
from cinderblock.drivers.ledger import KeyedLocks, Ledger
from cinderblock.drivers.reencrypt import Reencrypting

log = logging.getLogger(__name__)


class FileDriver:
    """VolumeDriver keeping ``<root>/<host>@<backend>/<pool>/volume-<id>.img`` sparse files
    (and ``snapshot-<id>.img`` copies of them: see `snapshots`).

    Constructing it scans every pool directory (creating missing ones, removing
    temp files a crash left) to rebuild the allocated bytes per pool; after that
    the counters are kept in memory. One instance owns a root.

    Raises:
        ValueError: no pools, or two pools with the same location.
    """

    def __init__(self, root: Path, pools: Sequence[PoolConfig]) -> None:
        if not pools:
            raise ValueError("a FileDriver needs at least one pool")
        self._root = Path(root)
        self._pools: dict[str, PoolConfig] = {}
        for pool in pools:
            if pool.location in self._pools:
                raise ValueError(f"pool {pool.location} is configured twice")
            self._pools[pool.location] = pool
        allocated = {
            location: imagefiles.scan_pool(self._pool_dir(pool))
            for location, pool in self._pools.items()
        }
        self._ledger = Ledger(self._pools, allocated)
        self._volume_locks = KeyedLocks()
        self._snapshots = snapshots.Snapshots(
            self._ledger, self._volume_locks, self._pool, self._pool_dir
        )
        self._reencrypting = Reencrypting(
            self._ledger, self._volume_locks, self._pool, self._volume_file
        )
        self._connections = Connections(self._root, self._volume_locks, self._pool, self._pool_dir)

    @property
    def root(self) -> Path:
        return self._root

    # -- VolumeDriver ---------------------------------------------------------------------

    async def create_volume(
        self,
        volume_id: str,
        size_gb: int,
        *,
        location: str | None,
        step_key: str,
        header: EncryptionHeader | None = None,
    ) -> str:
        check_volume_id(volume_id)
        check_size_gb(size_gb)
        size = size_gb * GIB
        ctx = {"volume_id": volume_id, "action": "create", "step_key": step_key}
        async with self._volume_locks.hold(volume_id):
            found = await self._find(volume_id, location)
            if found is not None:
                where = self._existing(volume_id, size, *found, step_key=step_key)
                if header is not None:  # a crash may have come between create and header
                    await self._write_header(
                        volume_id, self._volume_file(self._pools[where], volume_id), header
                    )
                return where
            pool = await self._reserve_placement(volume_id, size, location)
            path = self._volume_file(pool, volume_id)
            try:
                await asyncio.to_thread(imagefiles.create_sparse, path, size)
                if header is not None:
                    await asyncio.to_thread(encryption.write_header, path, header)
            except OSError as err:
                await self._ledger.release(pool.location, size)
                log.warning("create failed: %s", err, extra={**ctx, "location": pool.location})
                raise BackendError("create", volume_id, f"cannot create {path}: {err}") from err
        log.info(
            "created volume %s of %d GiB in %s",
            volume_id,
            size_gb,
            pool.location,
            extra={**ctx, "location": pool.location},
        )
        return pool.location

    async def extend_volume(
        self, volume_id: str, location: str, new_size_gb: int, *, step_key: str
    ) -> None:
        check_volume_id(volume_id)
        check_size_gb(new_size_gb)
        pool = self._pool("extend", volume_id, location)
        path = self._volume_file(pool, volume_id)
        size = new_size_gb * GIB
        ctx = {"volume_id": volume_id, "action": "extend", "step_key": step_key}
        async with self._volume_locks.hold(volume_id):
            current = await self._size_on_disk("extend", volume_id, path)
            if current is None:
                raise BackendError("extend", volume_id, f"volume file {path} not found")
            if current == size:
                log.info(
                    "volume %s is already %d GiB",
                    volume_id,
                    new_size_gb,
                    extra={**ctx, "location": location},
                )
                return
            if current > size:
                reason = f"would shrink {path} from {current} to {size} bytes"
                raise BackendError("extend", volume_id, reason)
            await self._ledger.reserve(pool, "extend", volume_id, size - current)
            try:
                await asyncio.to_thread(imagefiles.grow, path, size)
            except OSError as err:
                await self._ledger.release(pool.location, size - current)
                log.warning("extend failed: %s", err, extra={**ctx, "location": location})
                raise BackendError("extend", volume_id, f"cannot grow {path}: {err}") from err
        log.info(
            "extended volume %s to %d GiB",
            volume_id,
            new_size_gb,
            extra={**ctx, "location": location},
        )

    async def delete_volume(self, volume_id: str, location: str, *, step_key: str) -> None:
        check_volume_id(volume_id)
        pool = self._pool("delete", volume_id, location)
        path = self._volume_file(pool, volume_id)
        ctx = {"volume_id": volume_id, "action": "delete", "step_key": step_key}
        await self._connections.drop_all("delete", volume_id, location)
        async with self._volume_locks.hold(volume_id):
            try:
                freed = await asyncio.to_thread(imagefiles.remove, path)
            except OSError as err:
                log.warning("delete failed: %s", err, extra={**ctx, "location": location})
                raise BackendError("delete", volume_id, f"cannot remove {path}: {err}") from err
            if freed is None:
                log.info("volume %s already gone", volume_id, extra={**ctx, "location": location})
                return
            await self._ledger.release(location, freed)
        log.info("deleted volume %s", volume_id, extra={**ctx, "location": location})

    async def unmanage_volume(self, volume_id: str, location: str, *, step_key: str) -> None:
        """Stop managing the volume: its file stays where it is, bytes and space included
        (the pool keeps counting it, as the space is really used)."""
        check_volume_id(volume_id)
        pool = self._pool("unmanage", volume_id, location)
        path = self._volume_file(pool, volume_id)
        size = await self._size_on_disk("unmanage", volume_id, path)
        await self._connections.drop_all("unmanage", volume_id, location)
        ctx = {"volume_id": volume_id, "action": "unmanage", "step_key": step_key}
        log.info("unmanaged volume %s, %s bytes left at %s", volume_id, size, path, extra=ctx)

    async def migrate_volume(
        self, volume_id: str, source: str, destination: str, *, step_key: str
    ) -> str:
        """Copy the image to a pool of ``destination`` through a temp file, sparse, synced
        and checked by content digest before it gets its name; the source file stays."""
        check_volume_id(volume_id)
        source_path = self._volume_file(self._pool("migrate", volume_id, source), volume_id)
        candidates = migration.destination_pools(self._pools, volume_id, source, destination)
        ctx = {"volume_id": volume_id, "action": "migrate", "step_key": step_key}
        async with self._volume_locks.hold(volume_id):
            size = await self._size_on_disk("migrate", volume_id, source_path)
            if size is None:
                raise BackendError("migrate", volume_id, f"volume file {source_path} not found")
            copy = await self._existing_copy(volume_id, candidates)
            if copy is not None and copy[1] == size:
                copy_path = self._volume_file(copy[0], volume_id)
                ours, theirs = await migration.checksums(
                    "migrate", volume_id, source_path, copy_path
                )
                if ours == theirs:
                    where = {**ctx, "location": copy[0].location}
                    log.info("volume %s is already copied to %s", volume_id, copy_path, extra=where)
                    return copy[0].location
            if copy is not None:
                where = {**ctx, "location": copy[0].location}
                log.warning("replacing the stale copy of volume %s", volume_id, extra=where)
            pool, reserved = await self._reserve_copy(
                volume_id, size, destination, candidates, copy
            )
            ctx["location"] = pool.location
            try:
                digest = await migration.copy_verified(
                    volume_id, source_path, self._volume_file(pool, volume_id), ctx
                )
            except BaseException:
                await self._ledger.release(pool.location, reserved)
                raise
            if copy is not None and copy[1] > size:  # the stale copy it replaced was larger
                await self._ledger.release(pool.location, copy[1] - size)
        log.info(
            "migrated volume %s from %s to %s, sha256 %s",
            volume_id,
            source,
            pool.location,
            digest,
            extra=ctx,
        )
        return pool.location

    async def reencrypt_volume(
        self,
        volume_id: str,
        source: str,
        destination: str,
        *,
        target: EncryptionHeader | None,
        step_key: str,
    ) -> str:
        """Copy the volume's payload behind ``target``'s header (none: unencrypted) into
        the pool ``destination`` (the source's pool too: then the new image replaces the
        old one); see `reencrypt`."""
        return await self._reencrypting.reencrypt(
            volume_id, source, destination, target, step_key=step_key
        )

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
        await self._snapshots.create_volume(
            volume_id, snapshot_id, size_gb, location, step_key=step_key, header=header
        )
        return location

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
        """A copy of ``source_volid``'s image as the new volume, in its pool (`sources`);
        the source's lock keeps its other steps out while its bytes are read."""
        check_volume_id(volume_id)
        check_volume_id(source_volid)
        check_size_gb(size_gb)
        pool = self._pool("create", volume_id, location)
        ctx = {
            "volume_id": volume_id,
            "source_volid": source_volid,
            "action": "create",
            "step_key": step_key,
            "location": location,
        }
        async with self._volume_locks.hold(volume_id), self._volume_locks.hold(source_volid):
            await sources.create_from(
                self._ledger,
                pool,
                volume_id,
                self._volume_file(pool, source_volid),
                self._volume_file(pool, volume_id),
                size_gb,
                header=header,
                ctx=ctx,
            )
        return location

    async def create_snapshot(
        self, volume_id: str, snapshot_id: str, location: str, *, step_key: str
    ) -> None:
        await self._snapshots.create(volume_id, snapshot_id, location, step_key=step_key)

    async def delete_snapshot(self, snapshot_id: str, location: str, *, step_key: str) -> None:
        await self._snapshots.delete(snapshot_id, location, step_key=step_key)

    async def revert_to_snapshot(
        self, volume_id: str, snapshot_id: str, location: str, *, step_key: str
    ) -> None:
        await self._snapshots.revert(volume_id, snapshot_id, location, step_key=step_key)

    async def reimage_volume(
        self, volume_id: str, location: str, *, write: reimage.ImageWriter, step_key: str
    ) -> str:
        """An image's bytes replace the volume's (``reimage``): ``write(temp, start,
        limit)`` fills a temp copy of the volume's size, which is renamed over it."""
        check_volume_id(volume_id)
        pool = self._pool("reimage", volume_id, location)
        path = self._volume_file(pool, volume_id)
        return await reimage.reimage(
            self._ledger, self._volume_locks, pool, volume_id, path, write, step_key=step_key
        )

    async def initialize_connection(
        self, volume_id: str, location: str, spec: ExportSpec, *, step_key: str
    ) -> dict[str, Any]:
        """Record the export and answer a ``local`` connection to the image
        (`connections`)."""
        return await self._connections.export(volume_id, location, spec, step_key=step_key)

    async def terminate_connection(
        self, volume_id: str, location: str, export_id: str, *, step_key: str
    ) -> bool:
        return await self._connections.remove(volume_id, location, export_id, step_key=step_key)

    def exports(self, volume_id: str, location: str) -> list[dict[str, Any]]:
        return self._connections.records(volume_id, location)

    def export_dir(self, volume_id: str, location: str) -> Path:
        """Where the volume's export records live (for checks)."""
        return self._connections.directory("exports", volume_id, location)

    async def checksum(self, volume_id: str, location: str) -> str:
        """Content digest of the file at ``location`` (`copying.content_digest`: sha256 of
        the chunks' sha256s, holes never read). It takes no volume lock (a migration holds
        it for long): the digest covers the one inode it opened, at the size it had then."""
        check_volume_id(volume_id)
        path = self._volume_file(self._pool("checksum", volume_id, location), volume_id)
        try:
            return await asyncio.to_thread(copying.content_digest, path)
        except FileNotFoundError:
            raise BackendError("checksum", volume_id, f"volume file {path} not found") from None
        except OSError as err:
            raise BackendError("checksum", volume_id, f"cannot read {path}: {err}") from err

    def volume_path(self, volume_id: str, location: str) -> Path:
        check_volume_id(volume_id)
        return self._volume_file(self._pool("volume_path", volume_id, location), volume_id)

    def snapshot_path(self, snapshot_id: str, location: str) -> Path:
        return self._snapshots.path(snapshot_id, location)

    def pools(self) -> list[PoolStats]:
        return self._ledger.stats()

    # -- placement and migration ----------------------------------------------------------

    async def _reserve_placement(
        self, volume_id: str, size: int, location: str | None
    ) -> PoolConfig:
        """Choose the pool (the given one, or the one with most free space that fits)
        and reserve ``size`` bytes in it."""
        if location is not None:
            pool = self._pool("create", volume_id, location)
            await self._ledger.reserve(pool, "create", volume_id, size)
            return pool
        return await self._ledger.reserve_best(
            "create", volume_id, size, list(self._pools.values())
        )

    async def _existing_copy(
        self, volume_id: str, candidates: Sequence[PoolConfig]
    ) -> tuple[PoolConfig, int] | None:
        """The first candidate pool holding a file of the volume, with its apparent size."""
        for pool in candidates:
            size = await self._size_on_disk(
                "migrate", volume_id, self._volume_file(pool, volume_id)
            )
            if size is not None:
                return pool, size
        return None

    async def _reserve_copy(
        self,
        volume_id: str,
        size: int,
        destination: str,
        candidates: Sequence[PoolConfig],
        copy: tuple[PoolConfig, int] | None,
    ) -> tuple[PoolConfig, int]:
        """Choose the destination pool and reserve room for a copy of ``size`` bytes;
        return it with the bytes reserved. A stale copy already counts in its pool."""
        if copy is not None:
            pool, on_disk = copy
            growth = max(size - on_disk, 0)
            if growth:
                await self._ledger.reserve(pool, "migrate", volume_id, growth)
            return pool, growth
        if "#" in destination:
            await self._ledger.reserve(candidates[0], "migrate", volume_id, size)
            return candidates[0], size
        scope = f"pool of {destination}"
        pool = await self._ledger.reserve_best("migrate", volume_id, size, candidates, scope=scope)
        return pool, size

    # -- paths and lookups ----------------------------------------------------------------

    def _pool(self, operation: str, volume_id: str, location: str) -> PoolConfig:
        pool = self._pools.get(location)
        if pool is None:
            raise BackendError(operation, volume_id, f"unknown pool location {location!r}")
        return pool

    def _pool_dir(self, pool: PoolConfig) -> Path:
        return self._root / f"{pool.host}@{pool.backend}" / pool.pool

    def _volume_file(self, pool: PoolConfig, volume_id: str) -> Path:
        return self._pool_dir(pool) / imagefiles.image_name(volume_id)

    async def _write_header(self, volume_id: str, path: Path, header: EncryptionHeader) -> None:
        try:
            if await asyncio.to_thread(encryption.header_of, path) is None:
                await asyncio.to_thread(encryption.write_header, path, header)
        except OSError as err:
            raise BackendError("create", volume_id, f"cannot write header: {err}") from err

    async def _size_on_disk(self, operation: str, volume_id: str, path: Path) -> int | None:
        try:
            return await asyncio.to_thread(imagefiles.apparent_size, path)
        except OSError as err:
            raise BackendError(operation, volume_id, f"cannot stat {path}: {err}") from err

    async def _find(self, volume_id: str, location: str | None) -> tuple[str, int] | None:
        """The (location, apparent size) of the volume's existing file, if any: in the
        given pool, or in any pool when no location is given."""
        locations = list(self._pools) if location is None else [location]
        for loc in locations:
            path = self._volume_file(self._pool("create", volume_id, loc), volume_id)
            size = await self._size_on_disk("create", volume_id, path)
            if size is not None:
                return loc, size
        return None

    def _existing(
        self, volume_id: str, size: int, location: str, found_size: int, *, step_key: str
    ) -> str:
        """Outcome of re-creating a volume that already exists: same size is done, else error."""
        if found_size != size:
            reason = f"exists in {location} with {found_size} bytes, not {size}"
            raise BackendError("create", volume_id, reason)
        ctx = {
            "volume_id": volume_id,
            "action": "create",
            "step_key": step_key,
            "location": location,
        }
        log.info("volume %s already exists in %s", volume_id, location, extra=ctx)
        return location
