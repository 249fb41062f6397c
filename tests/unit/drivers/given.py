"""Pools, driver factories and data helpers shared by the driver tests."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cinderblock.drivers.base import PoolConfig, PoolStats, VolumeDriver
from cinderblock.drivers.faults import FaultInjectingDriver, FaultPlan
from cinderblock.drivers.file import FileDriver

MIB = 2**20

SMALL = "node1@file-a#pool0"
LARGE = "node1@file-a#pool1"
SHARED = "node2@file-b#pool0"
POOLS = [
    PoolConfig.parse(f"{SMALL}:10"),
    PoolConfig.parse(f"{LARGE}:20"),
    PoolConfig.parse(f"{SHARED}:5:multiattach"),
]

MakeDriver = Callable[..., VolumeDriver]


def file_driver(root: Path, pools: Sequence[PoolConfig]) -> VolumeDriver:
    return FileDriver(root, pools)


def wrapped_file_driver(root: Path, pools: Sequence[PoolConfig]) -> VolumeDriver:
    return FaultInjectingDriver(FileDriver(root, pools), FaultPlan.parse(""))


def stats(driver: VolumeDriver) -> dict[str, PoolStats]:
    return {pool.location: pool for pool in driver.pools()}


def allocated(driver: VolumeDriver) -> dict[str, int]:
    return {pool.location: pool.allocated_gb for pool in driver.pools()}


def pattern(offset: int, length: int) -> bytes:
    """Recognizable, incompressible bytes: the same for the same offset and length."""
    return random.Random(offset).randbytes(length)


def write_at(path: Path, chunks: dict[int, int]) -> None:
    """Write ``pattern(offset, length)`` at each ``offset: length`` of the file."""
    with path.open("r+b") as image:
        for offset, length in chunks.items():
            image.seek(offset)
            image.write(pattern(offset, length))


def read_at(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as image:
        image.seek(offset)
        return image.read(length)


def allocated_bytes(path: Path) -> int:
    """Bytes the file really occupies on disk (not its apparent size)."""
    return path.stat().st_blocks * 512


def files_in(directory: Path) -> list[str]:
    """Every entry of a pool directory, temp files included, sorted."""
    return sorted(entry.name for entry in directory.iterdir())


def zeros_then(chunks: dict[int, int], size: int) -> Iterator[bytes]:
    """The contents of a ``size``-byte sparse file holding ``write_at(chunks)``, in pieces."""
    position = 0
    for offset, length in sorted(chunks.items()):
        yield from _zeros(offset - position)
        yield pattern(offset, length)
        position = offset + length
    yield from _zeros(size - position)


def _zeros(count: int) -> Iterator[bytes]:
    while count > 0:
        yield bytes(min(count, 64 * MIB))
        count -= 64 * MIB
