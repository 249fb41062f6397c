"""The embedded image service: images as sparse files next to Glance-shaped JSON records.

Layout under `root`::

    <image_id>.json                     the record: Glance v2 shape, status queued/saving/active
    <image_id>.img                      the data, sparse, exactly `size` bytes
    .<image_id>.{json,img}.<rand>.tmp   a write in progress (removed when a store starts)

Every file is written to a temp file, fsynced and moved into place with ``os.replace``,
then the directory is fsynced: a crash leaves the old file or the new one, never half.
One store instance owns a root (the per-image locks are not shared across processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cinderblock.images import sparse
from cinderblock.images.port import (
    ACTIVE,
    QUEUED,
    SAVING,
    ImageServiceError,
    ImageSpec,
    check_image_id,
)

_log = logging.getLogger("cinderblock.images.local")
_T = TypeVar("_T")


class LocalImageStore:
    """`ImageService` on a local directory; checksums are sha256 (hex)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._locks: dict[str, asyncio.Lock] = {}
        root.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()

    async def create(self, spec: ImageSpec, *, request_id: str | None) -> str:
        async with self._lock(spec.image_id):
            record = await asyncio.to_thread(self._read, spec.image_id)
            if record is not None:
                _check_same(record, spec, "create")
                return spec.image_id
            now = _now()
            record = {
                **spec.properties,
                "id": spec.image_id,
                "name": spec.name,
                "disk_format": spec.disk_format,
                "container_format": spec.container_format,
                "visibility": spec.visibility,
                "protected": spec.protected,
                "min_disk": spec.min_disk,
                "min_ram": 0,
                "status": QUEUED,
                "size": None,
                "checksum": None,
                "os_hash_algo": None,
                "os_hash_value": None,
                "created_at": now,
                "updated_at": now,
            }
            await asyncio.to_thread(self._write_record, record)
        _log.info(
            "image created",
            extra={"image_id": spec.image_id, "action": "create", "request_id": request_id},
        )
        return spec.image_id

    async def _existing(self, image_id: str, operation: str) -> dict[str, Any]:
        """The image's record; a permanent 404 ImageServiceError if there is none."""
        record = await asyncio.to_thread(self._read, image_id)
        if record is None:
            raise ImageServiceError(
                "no such image",
                retryable=False,
                operation=operation,
                image_id=image_id,
                status=404,
            )
        return record

    async def upload(self, image_id: str, source: Path, *, size: int) -> str:
        check_image_id(image_id)
        async with self._lock(image_id):
            record = await self._existing(image_id, "upload")
            if record["status"] == ACTIVE:
                return await self._same_upload(record, source, size)
            if record["status"] not in (QUEUED, SAVING):
                raise ImageServiceError(
                    f"image is {record['status']}, not queued",
                    retryable=False,
                    operation="upload",
                    image_id=image_id,
                    status=409,
                )
            try:
                checksum = await _to_thread_to_the_end(self._upload, record, source, size)
            except (sparse.SourceTooSmallError, FileNotFoundError) as err:
                raise ImageServiceError(
                    str(err), retryable=False, operation="upload", image_id=image_id
                ) from err
            except OSError as err:
                raise ImageServiceError(
                    f"copy failed: {err}", retryable=True, operation="upload", image_id=image_id
                ) from err
        _log.info("image uploaded", extra={"image_id": image_id, "action": "upload"})
        return checksum

    async def download(self, image_id: str, target: Path, *, start: int, limit: int) -> str:
        check_image_id(image_id)
        async with self._lock(image_id):
            record = await self._existing(image_id, "download")
            if record["status"] != ACTIVE:
                raise ImageServiceError(
                    f"image is {record['status']}, not active",
                    retryable=False,
                    operation="download",
                    image_id=image_id,
                    status=409,
                )
            try:
                found = await _to_thread_to_the_end(
                    _write_into,
                    self.image_path(image_id),
                    int(record["size"]),
                    target,
                    start,
                    limit,
                )
            except (sparse.TooLargeError, sparse.SourceTooSmallError, FileNotFoundError) as err:
                raise ImageServiceError(
                    str(err), retryable=False, operation="download", image_id=image_id
                ) from err
            except OSError as err:
                raise ImageServiceError(
                    f"copy failed: {err}", retryable=True, operation="download", image_id=image_id
                ) from err
        if found != record["os_hash_value"]:
            raise ImageServiceError(
                f"the image's data has sha256 {found}, its record says {record['os_hash_value']}",
                retryable=False,
                operation="download",
                image_id=image_id,
                status=409,
            )
        _log.info("image downloaded", extra={"image_id": image_id, "action": "download"})
        return found

    async def get(self, image_id: str) -> dict[str, Any] | None:
        check_image_id(image_id)
        return await asyncio.to_thread(self._read, image_id)

    async def delete(self, image_id: str) -> None:
        check_image_id(image_id)
        async with self._lock(image_id):
            record = await asyncio.to_thread(self._read, image_id)
            if record is None:
                return
            if record["protected"]:
                raise ImageServiceError(
                    "image is protected",
                    retryable=False,
                    operation="delete",
                    image_id=image_id,
                    status=403,
                )
            await asyncio.to_thread(self._remove, image_id)
        _log.info("image deleted", extra={"image_id": image_id, "action": "delete"})

    def image_path(self, image_id: str) -> Path:
        """Where the image's data lives (once it is active)."""
        check_image_id(image_id)
        return self._root / f"{image_id}.img"

    # -- internals -------------------------------------------------------------------

    def _lock(self, image_id: str) -> asyncio.Lock:
        return self._locks.setdefault(image_id, asyncio.Lock())

    async def _same_upload(self, record: dict[str, Any], source: Path, size: int) -> str:
        image_id = record["id"]
        try:
            found = await asyncio.to_thread(sparse.digests, source, size, ["sha256"])
        except (OSError, ValueError) as err:
            raise ImageServiceError(
                str(err), retryable=False, operation="upload", image_id=image_id
            ) from err
        if record["size"] == size and record["os_hash_value"] == found["sha256"]:
            return found["sha256"]
        raise ImageServiceError(
            "image is already active with other data",
            retryable=False,
            operation="upload",
            image_id=image_id,
            status=409,
        )

    def _upload(self, record: dict[str, Any], source: Path, size: int) -> str:
        """Blocking: saving → copy → active; on any failure the image is queued again."""
        image_id = record["id"]
        self._write_record({**record, "status": SAVING, "updated_at": _now()})
        target = self.image_path(image_id)
        temp = self._root / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            checksum = _copy(source, temp, size)
            os.replace(temp, target)
            _fsync_dir(self._root)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            self._write_record({**record, "status": QUEUED, "updated_at": _now()})
            raise
        self._write_record(
            {
                **record,
                "status": ACTIVE,
                "size": size,
                "checksum": None,
                "os_hash_algo": "sha256",
                "os_hash_value": checksum,
                "updated_at": _now(),
            }
        )
        return checksum

    def _read(self, image_id: str) -> dict[str, Any] | None:
        try:
            text = (self._root / f"{image_id}.json").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        record: dict[str, Any] = json.loads(text)
        return record

    def _write_record(self, record: dict[str, Any]) -> None:
        target = self._root / f"{record['id']}.json"
        temp = self._root / f".{target.name}.{secrets.token_hex(4)}.tmp"
        data = json.dumps(record, sort_keys=True, indent=1).encode()
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                sparse.write_all(fd, data, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        _fsync_dir(self._root)

    def _remove(self, image_id: str) -> None:
        # The record goes first: without it the image does not exist, and a data file
        # left by a crash here is an orphan the next start removes.
        (self._root / f"{image_id}.json").unlink(missing_ok=True)
        self.image_path(image_id).unlink(missing_ok=True)
        _fsync_dir(self._root)

    def _remove_leftovers(self) -> None:
        for path in self._root.iterdir():
            orphan = path.suffix == ".img" and not path.with_suffix(".json").exists()
            if (path.name.startswith(".") and path.name.endswith(".tmp")) or orphan:
                path.unlink(missing_ok=True)


def _check_same(record: dict[str, Any], spec: ImageSpec, operation: str) -> None:
    wanted = (spec.name, spec.disk_format, spec.container_format)
    found = (record.get("name"), record.get("disk_format"), record.get("container_format"))
    if found != wanted:
        raise ImageServiceError(
            f"an image with this id exists with (name, disk_format, container_format) {found}",
            retryable=False,
            operation=operation,
            image_id=spec.image_id,
            status=409,
        )


def _copy(source: Path, target: Path, size: int) -> str:
    """Copy the first `size` bytes of `source` into the new file `target`, sparse (holes
    and all-zero chunks are skipped, the file is truncated to `size`), fsync it, and
    return the hex sha256 of those bytes."""
    digest = sparse.new_hash("sha256")
    src = sparse.open_source(source, size)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.ftruncate(dst, size)
            for offset, chunk, hole in sparse.chunks(src, size):
                digest.update(chunk)
                if not hole and not sparse.is_zero(chunk):
                    sparse.write_all(dst, chunk, offset)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return digest.hexdigest()


def _write_into(source: Path, size: int, target: Path, start: int, limit: int) -> str:
    """Write the `size` bytes of `source` into the existing file `target` from `start`
    (sparse: holes and zero chunks are not written), fsync it, return their sha256."""
    src = sparse.open_source(source, size)
    try:
        dst = os.open(target, os.O_WRONLY)
        try:
            writer = sparse.SparseWriter(dst, start, limit)
            for _, chunk, _ in sparse.chunks(src, size):
                writer.write(chunk)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return writer.hexdigests()["sha256"]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _to_thread_to_the_end(func: Callable[..., _T], *args: Any) -> _T:
    """Run `func` in a thread; if the caller is cancelled, wait for the thread to finish
    before letting the cancellation through, so the image's lock is not released while
    its files are still being written."""
    task = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
