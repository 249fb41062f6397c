"""The file driver's migration helpers: where a copy may land, and the verified copy (which
snapshots and reverts use too)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

from cinderblock.drivers import copying, imagefiles
from cinderblock.drivers.base import BackendError, PoolConfig, before_verify

log = logging.getLogger("cinderblock.drivers.file")


def destination_pools(
    pools: Mapping[str, PoolConfig], volume_id: str, source: str, destination: str
) -> list[PoolConfig]:
    """The pools a migration from ``source`` to ``destination`` may land in: the named
    pool, or every pool of the named backend but the source.

    Raises:
        BackendError: the destination is an unknown pool or backend, or it leaves only
            the source pool.
    """
    if "#" in destination:
        if destination == source:
            reason = f"source and destination are the same pool {source}"
            raise BackendError("migrate", volume_id, reason)
        pool = pools.get(destination)
        if pool is None:
            reason = f"unknown pool location {destination!r}"
            raise BackendError("migrate", volume_id, reason)
        return [pool]
    backend = [pool for pool in pools.values() if f"{pool.host}@{pool.backend}" == destination]
    if not backend:
        raise BackendError("migrate", volume_id, f"unknown backend {destination!r}")
    others = [pool for pool in backend if pool.location != source]
    if not others:
        reason = f"the only pool of {destination} is the same pool {source} as the source"
        raise BackendError("migrate", volume_id, reason)
    return others


async def checksums(operation: str, volume_id: str, *paths: Path) -> list[str]:
    """The content digest (`copying.content_digest`) of each file, in parallel threads.

    Raises:
        BackendError: a file is missing or could not be read.
    """
    try:
        return list(
            await asyncio.gather(*(asyncio.to_thread(copying.content_digest, p) for p in paths))
        )
    except OSError as err:
        raise BackendError(operation, volume_id, f"cannot checksum: {err}") from err


async def copy_verified(
    volume_id: str,
    source: Path,
    target: Path,
    ctx: dict[str, str],
    *,
    operation: str = "migrate",
    expected: str | None = None,
) -> str:
    """Copy ``source`` sparsely to a temp file next to ``target``, fsync it, check its
    content digest against the source's (``expected`` when the caller already hashed the
    source under a lock that keeps it unchanged), then rename it to ``target`` (replacing a
    file there); return the digest. Afterwards the temp file is gone, whatever happened, so
    a crash or a failure never leaves a file that looks complete, and ``target`` is
    either untouched or wholly the copy. Errors name ``operation``.

    Raises:
        BackendError: the copy failed, or its checksum did not match the source's.
    """
    temp = imagefiles.temp_path(target)
    try:
        written = await asyncio.to_thread(copying.copy_sparse, source, temp)
        log.info("copied %d data bytes of %s", written, source.name, extra=ctx)
        hook = before_verify.get()
        if hook is not None:
            await asyncio.to_thread(hook, temp)
        if expected is None:
            expected, copied = await checksums(operation, volume_id, source, temp)
        else:
            (copied,) = await checksums(operation, volume_id, temp)
        if copied != expected:
            reason = f"checksum mismatch: source sha256 {expected}, copy {copied}"
            log.error("%s failed: %s", operation, reason, extra=ctx)
            raise BackendError(operation, volume_id, reason)
        await asyncio.to_thread(imagefiles.install, temp, target)
    except OSError as err:
        log.warning("%s failed: %s", operation, err, extra=ctx)
        reason = f"cannot copy {source} to {target}: {err}"
        raise BackendError(operation, volume_id, reason) from err
    finally:
        imagefiles.discard(temp)  # one unlink, run even when cancelled; no-op once installed
    return expected
