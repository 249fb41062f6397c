"""A real file-backed driver: each volume is a sparse image file in a pool directory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from cinderblock.drivers import imagefiles
from cinderblock.drivers.base import (
    GIB,
    BackendError,
    CapacityError,
    PoolConfig,
    PoolStats,
    check_size_gb,
    check_volume_id,
)

log = logging.getLogger(__name__)


class _KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


class FileDriver:
    """VolumeDriver keeping ``<root>/<host>@<backend>/<pool>/volume-<id>.img`` sparse files.

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
        self._allocated = {
            location: imagefiles.scan_pool(self._pool_dir(pool))
            for location, pool in self._pools.items()
        }
        self._alloc_lock = asyncio.Lock()
        self._volume_locks = _KeyedLocks()

    @property
    def root(self) -> Path:
        return self._root

    # -- VolumeDriver ---------------------------------------------------------------------

    async def create_volume(
        self, volume_id: str, size_gb: int, *, location: str | None, step_key: str
    ) -> str:
        check_volume_id(volume_id)
        check_size_gb(size_gb)
        size = size_gb * GIB
        ctx = {"volume_id": volume_id, "action": "create", "step_key": step_key}
        async with self._volume_locks.hold(volume_id):
            found = await self._find(volume_id, location)
            if found is not None:
                return self._existing(volume_id, size, *found, step_key=step_key)
            pool = await self._reserve_placement(volume_id, size, location)
            path = self._volume_file(pool, volume_id)
            try:
                await asyncio.to_thread(imagefiles.create_sparse, path, size)
            except OSError as err:
                await self._release(pool.location, size)
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
            await self._reserve(pool, "extend", volume_id, size - current)
            try:
                await asyncio.to_thread(imagefiles.grow, path, size)
            except OSError as err:
                await self._release(pool.location, size - current)
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
        async with self._volume_locks.hold(volume_id):
            try:
                freed = await asyncio.to_thread(imagefiles.remove, path)
            except OSError as err:
                log.warning("delete failed: %s", err, extra={**ctx, "location": location})
                raise BackendError("delete", volume_id, f"cannot remove {path}: {err}") from err
            if freed is None:
                log.info("volume %s already gone", volume_id, extra={**ctx, "location": location})
                return
            await self._release(location, freed)
        log.info("deleted volume %s", volume_id, extra={**ctx, "location": location})

    async def unmanage_volume(self, volume_id: str, location: str, *, step_key: str) -> None:
        """Stop managing the volume: its file stays where it is, bytes and space included
        (the pool keeps counting it, as the space is really used)."""
        check_volume_id(volume_id)
        pool = self._pool("unmanage", volume_id, location)
        path = self._volume_file(pool, volume_id)
        size = await self._size_on_disk("unmanage", volume_id, path)
        ctx = {"volume_id": volume_id, "action": "unmanage", "step_key": step_key}
        log.info("unmanaged volume %s, %s bytes left at %s", volume_id, size, path, extra=ctx)

    def volume_path(self, volume_id: str, location: str) -> Path:
        check_volume_id(volume_id)
        return self._volume_file(self._pool("volume_path", volume_id, location), volume_id)

    def pools(self) -> list[PoolStats]:
        stats = []
        for location, pool in self._pools.items():
            allocated_gb = -(-self._allocated[location] // GIB)  # a partial GiB counts as used
            stats.append(
                PoolStats(
                    location=location,
                    capacity_gb=pool.capacity_gb,
                    allocated_gb=allocated_gb,
                    free_gb=max(pool.capacity_gb - allocated_gb, 0),
                    multiattach=pool.multiattach,
                )
            )
        return stats

    # -- placement and accounting ---------------------------------------------------------

    def _free_bytes(self, location: str) -> int:
        return self._pools[location].capacity_gb * GIB - self._allocated[location]

    async def _reserve_placement(
        self, volume_id: str, size: int, location: str | None
    ) -> PoolConfig:
        """Choose the pool (the given one, or the one with most free space that fits)
        and reserve ``size`` bytes in it."""
        if location is not None:
            pool = self._pool("create", volume_id, location)
            await self._reserve(pool, "create", volume_id, size)
            return pool
        async with self._alloc_lock:
            fitting = [loc for loc in self._pools if self._free_bytes(loc) >= size]
            if not fitting:
                most = max(max(self._free_bytes(loc), 0) for loc in self._pools) // GIB
                reason = f"no pool has {size // GIB} GiB free (most free: {most} GiB)"
                raise CapacityError("create", volume_id, reason)
            chosen = max(fitting, key=self._free_bytes)  # ties: first in configuration order
            self._allocated[chosen] += size
            return self._pools[chosen]

    async def _reserve(self, pool: PoolConfig, operation: str, volume_id: str, size: int) -> None:
        async with self._alloc_lock:
            free = self._free_bytes(pool.location)
            if free < size:
                reason = (
                    f"pool {pool.location} has {max(free, 0) // GIB} GiB free,"
                    f" {-(-size // GIB)} GiB needed"
                )
                raise CapacityError(operation, volume_id, reason)
            self._allocated[pool.location] += size

    async def _release(self, location: str, size: int) -> None:
        async with self._alloc_lock:
            self._allocated[location] = max(self._allocated[location] - size, 0)

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


def local_connection_info(
    root: Path, location: str, volume_id: str, *, access_mode: str, connector: object
) -> dict[str, object]:
    """What os-initialize_connection returns for a file-backed volume: a local path
    connector (os-brick's ``local`` type). Pure: it names the file, it does not open it."""
    host_backend, _, pool = location.partition("#")
    path = root / host_backend / pool / imagefiles.image_name(volume_id)
    multipath = (
        bool(connector.get("enforce_multipath", False)) if isinstance(connector, dict) else False
    )
    data: dict[str, object] = {
        "device_path": str(path),
        "access_mode": access_mode,
        "qos_specs": None,
        "encrypted": False,
        "discard": True,
        "enforce_multipath": multipath,
    }
    return {"driver_volume_type": "local", "data": data, "enforce_multipath": multipath}
