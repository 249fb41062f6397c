"""Capacity accounting of a driver's pools, and per-key locks (no I/O here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from cinderblock.drivers.base import GIB, CapacityError, PoolConfig, PoolStats


def ceil_gib(size: int) -> int:
    """Whole GiB needed for ``size`` bytes (a partial GiB counts as one)."""
    return -(-size // GIB)


class KeyedLocks:
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


class Ledger:
    """Allocated bytes per pool, changed only under one asyncio.Lock, so concurrent
    reservations never overcommit a pool.

    Args:
        pools: the configured pools, in configuration order, by location.
        allocated: bytes already allocated per location (from a scan of the disk).
    """

    def __init__(self, pools: Mapping[str, PoolConfig], allocated: Mapping[str, int]) -> None:
        self._pools = dict(pools)
        self._allocated = {location: allocated.get(location, 0) for location in self._pools}
        self._lock = asyncio.Lock()

    def free_bytes(self, location: str) -> int:
        return self._pools[location].capacity_gb * GIB - self._allocated[location]

    async def reserve(self, pool: PoolConfig, operation: str, volume_id: str, size: int) -> None:
        """Reserve ``size`` bytes in ``pool``.

        Raises:
            CapacityError: the pool has less than ``size`` bytes free.
        """
        async with self._lock:
            free = self.free_bytes(pool.location)
            if free < size:
                reason = (
                    f"pool {pool.location} has {max(free, 0) // GIB} GiB free,"
                    f" {ceil_gib(size)} GiB needed"
                )
                raise CapacityError(operation, volume_id, reason)
            self._allocated[pool.location] += size

    async def reserve_best(
        self,
        operation: str,
        volume_id: str,
        size: int,
        candidates: Sequence[PoolConfig],
        *,
        scope: str = "pool",
    ) -> PoolConfig:
        """Reserve ``size`` bytes in the candidate with the most free space that fits
        (ties: the first in ``candidates``) and return it.

        Raises:
            CapacityError: no candidate fits; ``scope`` names them in the reason
                (``no pool of node1@file-a has 3 GiB free (most free: 1 GiB)``).
        """
        async with self._lock:
            fitting = [pool for pool in candidates if self.free_bytes(pool.location) >= size]
            if not fitting:
                most = max(max(self.free_bytes(pool.location), 0) for pool in candidates) // GIB
                reason = f"no {scope} has {ceil_gib(size)} GiB free (most free: {most} GiB)"
                raise CapacityError(operation, volume_id, reason)
            chosen = max(fitting, key=lambda pool: self.free_bytes(pool.location))
            self._allocated[chosen.location] += size
            return chosen

    async def release(self, location: str, size: int) -> None:
        async with self._lock:
            self._allocated[location] = max(self._allocated[location] - size, 0)

    def stats(self) -> list[PoolStats]:
        """Capacity figures of every pool in configuration order (whole GiB)."""
        stats = []
        for location, pool in self._pools.items():
            allocated_gb = ceil_gib(self._allocated[location])
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
