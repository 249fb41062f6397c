"""os-reimage's driver step: an image's bytes replace a volume's, in one rename.

The new image is built in a temp file of the volume's size next to it (an encrypted volume's
header copied first, the image written behind it), by a writer the caller passes (the
sagas hand over the image service's download: this package imports no image client). Only
a complete, synced file is renamed over the volume, so a failure or a crash leaves the old
bytes (and no temp file after a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from cinderblock.drivers import encryption, imagefiles
from cinderblock.drivers.base import BackendError, ImageWriter, PoolConfig
from cinderblock.drivers.ledger import KeyedLocks, Ledger

log = logging.getLogger("cinderblock.drivers.file")

__all__ = ["ImageWriter", "reimage"]


def _prepare(volume: Path, temp: Path, size: int) -> int:
    """Create ``temp`` sparse at ``size`` holding the volume's encryption header, if it has
    one; return where the image's bytes start."""
    header = encryption.header_of(volume)
    start = encryption.header_size_of(header) if header is not None else 0
    src = os.open(volume, os.O_RDONLY)
    try:
        dst = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.ftruncate(dst, size)
            if start:
                os.pwrite(dst, os.pread(src, start, 0), 0)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return start


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def reimage(
    ledger: Ledger,
    locks: KeyedLocks,
    pool: PoolConfig,
    volume_id: str,
    volume: Path,
    write: ImageWriter,
    *,
    step_key: str,
) -> str:
    """Build the volume's new image with ``write`` and install it; return the sha256 the
    writer reported. Raises BackendError for a missing volume or failed file I/O, and
    whatever ``write`` raises (the temp file is removed, the volume untouched)."""
    ctx = {"volume_id": volume_id, "action": "reimage", "step_key": step_key}
    async with locks.hold(volume_id):
        try:
            size = await asyncio.to_thread(imagefiles.apparent_size, volume)
        except OSError as err:
            raise BackendError("reimage", volume_id, f"cannot stat {volume}: {err}") from err
        if size is None:
            raise BackendError("reimage", volume_id, f"volume file {volume} not found")
        await ledger.reserve(pool, "reimage", volume_id, size)  # the temp copy
        temp = imagefiles.temp_path(volume)
        try:
            try:
                start = await asyncio.to_thread(_prepare, volume, temp, size)
            except OSError as err:
                raise BackendError("reimage", volume_id, f"cannot prepare: {err}") from err
            checksum = await write(temp, start, size - start)
            try:
                await asyncio.to_thread(_sync, temp)
                await asyncio.to_thread(imagefiles.install, temp, volume)
            except OSError as err:
                raise BackendError("reimage", volume_id, f"cannot install: {err}") from err
        finally:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(imagefiles.discard, temp)
            await ledger.release(pool.location, size)  # installed, it replaced one as big
    log.info("reimaged volume %s, image sha256 %s", volume_id, checksum, extra=ctx)
    return checksum
