"""The file driver's volumes made from a source: a snapshot's image or another volume's (a
clone), in the source's pool.

The new image is the verified copy every copying step makes (`migration.copy_verified`:
sparse, synced, checked by content digest, renamed into place), then its encryption header
gets the new volume's key id, then it grows to the requested size with zeros (a hole).
A redelivered step finds the installed copy and only finishes what is missing (header,
growth): the bytes are never copied twice, and no second file is made. The caller holds
the locks that keep the source unchanged during the copy (the snapshot's, or the source
volume's) and the new volume's.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from cinderblock.drivers import encryption, imagefiles, migration
from cinderblock.drivers.base import GIB, BackendError, PoolConfig
from cinderblock.drivers.encryption import EncryptionHeader
from cinderblock.drivers.ledger import Ledger

log = logging.getLogger("cinderblock.drivers.file")


async def create_from(
    ledger: Ledger,
    pool: PoolConfig,
    volume_id: str,
    source: Path,
    target: Path,
    size_gb: int,
    *,
    header: EncryptionHeader | None,
    ctx: dict[str, str],
) -> None:
    """Make ``target`` (the new volume's image, ``size_gb``) from ``source`` in ``pool``.

    Raises:
        CapacityError: the pool cannot hold the new volume.
        BackendError: the source is missing or larger than the new volume, an image of
            the new volume exists with another size, the copy failed or did not verify
            (nothing is left), or the header or the growth could not be written (the new
            image is removed again).
    """
    size = size_gb * GIB
    current = await _size("create", volume_id, target)
    if current is not None and current > size:
        reason = f"exists in {pool.location} with {current} bytes, not {size}"
        raise BackendError("create", volume_id, reason)
    if current is None:
        source_size = await _size("create", volume_id, source)
        if source_size is None:
            raise BackendError("create", volume_id, f"source file {source} not found")
        if source_size > size:
            reason = f"source {source.name} has {source_size} bytes, more than {size}"
            raise BackendError("create", volume_id, reason)
        await ledger.reserve(pool, "create", volume_id, size)
        try:
            digest = await migration.copy_verified(
                volume_id, source, target, ctx, operation="create"
            )
        except BaseException:
            await ledger.release(pool.location, size)
            raise
        log.info("copied %s into volume %s, sha256 %s", source.name, volume_id, digest, extra=ctx)
    else:  # a redelivery: the verified copy is in place, maybe not its header or growth
        log.info("volume %s already copied from %s", volume_id, source.name, extra=ctx)
        if size > current:
            await ledger.reserve(pool, "create", volume_id, size - current)
    try:
        await asyncio.to_thread(_finish, target, size, header)
    except OSError as err:
        await asyncio.to_thread(imagefiles.remove, target)
        await ledger.release(pool.location, size)  # all it took: the copy and its growth
        log.warning("create failed: %s", err, extra=ctx)
        raise BackendError("create", volume_id, f"cannot finish {target}: {err}") from err


def _finish(target: Path, size: int, header: EncryptionHeader | None) -> None:
    """The new volume's own header (its key id), then its size: both idempotent."""
    if header is not None:
        encryption.write_header(target, header)
    if (imagefiles.apparent_size(target) or 0) < size:
        imagefiles.grow(target, size)


async def _size(operation: str, volume_id: str, path: Path) -> int | None:
    try:
        return await asyncio.to_thread(imagefiles.apparent_size, path)
    except OSError as err:
        raise BackendError(operation, volume_id, f"cannot stat {path}: {err}") from err
