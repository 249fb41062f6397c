"""The file driver's re-encrypting copy (a retype between types that differ in encryption).

The volume's payload is copied behind the new header (or none) into a temp file in the
destination pool, fsynced, verified by payload digest, then renamed to the volume's image
name there: over the source image when the destination is the source's pool, next to
nothing otherwise (the saga removes the source once the retype is recorded). The source is
untouched until that rename, and the rename is all or nothing. When the payload cannot fit
behind the new header, `NoRoomForDataError` is raised before anything is written.

Idempotent by outcome: a destination image that already carries the target header (same
key id), or carries none when none is wanted, with the source's payload, is the result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from cinderblock.drivers import encryption, imagefiles
from cinderblock.drivers.base import BackendError, PoolConfig, before_verify, check_volume_id
from cinderblock.drivers.encryption import EncryptionHeader, NoRoomForDataError
from cinderblock.drivers.ledger import KeyedLocks, Ledger

log = logging.getLogger("cinderblock.drivers.file")

OPERATION = "retype"
PoolLookup = Callable[[str, str, str], PoolConfig]


class Reencrypting:
    """The re-encrypting copy of a FileDriver, on its ledger, volume locks and pools."""

    def __init__(
        self,
        ledger: Ledger,
        volume_locks: KeyedLocks,
        pool: PoolLookup,
        volume_file: Callable[[PoolConfig, str], Path],
    ) -> None:
        self._ledger = ledger
        self._volume_locks = volume_locks
        self._pool = pool
        self._volume_file = volume_file

    async def reencrypt(
        self,
        volume_id: str,
        source: str,
        destination: str,
        target: EncryptionHeader | None,
        *,
        step_key: str,
    ) -> str:
        check_volume_id(volume_id)
        src_pool = self._pool(OPERATION, volume_id, source)
        dst_pool = self._pool(OPERATION, volume_id, destination)
        src_path = self._volume_file(src_pool, volume_id)
        dst_path = self._volume_file(dst_pool, volume_id)
        ctx = {
            "volume_id": volume_id,
            "action": OPERATION,
            "step_key": step_key,
            "location": destination,
        }
        async with self._volume_locks.hold(volume_id):
            size = await self._stat(volume_id, src_path)
            if size is None:
                raise BackendError(OPERATION, volume_id, f"volume file {src_path} not found")
            if await self._already_done(volume_id, src_path, dst_path, target):
                log.info("volume %s already re-encrypted", volume_id, extra=ctx)
                return destination
            dst_header = target.size if target is not None else 0
            end = await self._data_end(volume_id, src_path)
            if not encryption.fits(end, size, dst_header):
                raise NoRoomForDataError(OPERATION, volume_id, _no_room(end, size, target))
            stale = await self._stat(volume_id, dst_path) if dst_pool != src_pool else None
            reserved = max(size - (stale or 0), 0)
            await self._ledger.reserve(dst_pool, OPERATION, volume_id, reserved)
            try:
                await self._build(volume_id, src_path, dst_path, target, ctx)
            except BaseException:
                await self._ledger.release(dst_pool.location, reserved)
                raise
            if dst_pool == src_pool:  # the new image replaced one of the same size
                await self._ledger.release(dst_pool.location, reserved)
            elif stale is not None and stale > size:
                await self._ledger.release(dst_pool.location, stale - size)
        log.info(
            "re-encrypted volume %s from %s into %s (%s header)",
            volume_id,
            source,
            destination,
            dst_header,
            extra=ctx,
        )
        return destination

    async def _build(
        self,
        volume_id: str,
        src_path: Path,
        dst_path: Path,
        target: EncryptionHeader | None,
        ctx: dict[str, str],
    ) -> None:
        temp = imagefiles.temp_path(dst_path)
        try:
            written = await asyncio.to_thread(encryption.copy_payload, src_path, temp, target)
            log.info("copied %d payload bytes of %s", written, src_path.name, extra=ctx)
            hook = before_verify.get()
            if hook is not None:
                await asyncio.to_thread(hook, temp)
            ours, theirs = await asyncio.gather(
                asyncio.to_thread(encryption.payload_digest, src_path),
                asyncio.to_thread(encryption.payload_digest, temp),
            )
            if ours != theirs:
                reason = f"checksum mismatch: source payload {ours}, copy {theirs}"
                raise BackendError(OPERATION, volume_id, reason)
            await asyncio.to_thread(imagefiles.install, temp, dst_path)
        except (OSError, ValueError) as err:
            reason = f"cannot copy {src_path} to {dst_path}: {err}"
            raise BackendError(OPERATION, volume_id, reason) from err
        finally:
            imagefiles.discard(temp)

    async def _already_done(
        self, volume_id: str, src_path: Path, dst_path: Path, target: EncryptionHeader | None
    ) -> bool:
        if await self._stat(volume_id, dst_path) is None:
            return False
        found = await self._header(volume_id, dst_path)
        if target is not None and target.size:
            matches = found is not None and found.get("key_id") == target.key_id
        else:
            matches = found is None
        if not matches:
            return False
        if src_path == dst_path:
            # In place: the image carries the target header already. Without a header on
            # either side the payload stays where it is, so a copy would change nothing.
            return True
        ours, theirs = await asyncio.gather(
            asyncio.to_thread(encryption.payload_digest, src_path),
            asyncio.to_thread(encryption.payload_digest, dst_path),
        )
        return bool(ours == theirs)

    async def _stat(self, volume_id: str, path: Path) -> int | None:
        try:
            return await asyncio.to_thread(imagefiles.apparent_size, path)
        except OSError as err:
            raise BackendError(OPERATION, volume_id, f"cannot stat {path}: {err}") from err

    async def _data_end(self, volume_id: str, path: Path) -> int:
        try:
            return await asyncio.to_thread(encryption.data_end, path)
        except OSError as err:
            raise BackendError(OPERATION, volume_id, f"cannot read {path}: {err}") from err

    async def _header(self, volume_id: str, path: Path) -> dict[str, object] | None:
        try:
            return await asyncio.to_thread(encryption.header_of, path)
        except OSError as err:
            raise BackendError(OPERATION, volume_id, f"cannot read {path}: {err}") from err


def _no_room(end: int, size: int, target: EncryptionHeader | None) -> str:
    header = target.size if target is not None else 0
    needed = encryption.size_needed_gb(end, header)
    provider = target.provider if target is not None else "new"
    return (
        f"the volume's data ends at byte {end}, beyond the "
        f"{encryption.usable_bytes(size, header)} usable bytes of an encrypted volume of the "
        f"same size (the {provider} encryption header takes {header // encryption.MIB} MiB); "
        f"extend the volume to {needed} GiB first (its size + 1 GiB always suffices)"
    )
