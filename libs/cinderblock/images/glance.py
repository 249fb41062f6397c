"""`ImageService` on OpenStack Glance (Image API v2), over aiohttp.

The Glance v2 facts this relies on (OpenStack Image API v2 reference,
https://docs.openstack.org/api-ref/image/v2/ , as quoted by docs.virtuozzo.com's
"Creating image records", "Uploading image data" and "Deleting images" pages, and the
v2.0 spec at docs.huihoo.com/openstack/archive/api/openstack-image-service/2.0/):

- ``POST /v2/images`` takes a JSON image: ``id`` (optional, user-chosen UUID), ``name``,
  ``disk_format``, ``container_format``, ``visibility``, ``protected``, ``min_disk``
  (GB), and any other key is an additional property whose value is a string. Answer
  201 with the image, ``status`` ``queued``. An ``id`` already assigned (also to a
  deleted image) fails with 409.
- ``PUT /v2/images/{id}/file`` with ``Content-Type: application/octet-stream`` stores
  the whole request body as the image's data; the image must be ``queued`` (else 409),
  is ``saving`` meanwhile and ``active`` afterwards. Answer 204. 413 when the data is
  larger than the service allows or the storage quota is exceeded. A failed upload puts
  the image back to ``queued`` (``ImageDataController._restore`` in Glance's
  ``glance/api/v2/image_data.py``), so it can be uploaded again.
- ``GET /v2/images/{id}`` answers 200 with the image: ``status``, ``size``,
  ``checksum`` (md5 hex, deprecated but still set), ``os_hash_algo`` / ``os_hash_value``
  (the "multihash": algorithm from glance.conf ``hashing_algorithm``, sha512 by default,
  and its hex digest; docs.openstack.org/glance/latest/admin/os_hash_algo.html).
- ``DELETE /v2/images/{id}`` answers 204; 403 for a ``protected`` image; 404 when missing.
- Requests carry ``X-Auth-Token``; ``X-OpenStack-Request-ID`` links the call to the
  caller's request in Glance's logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from cinderblock.images import sparse
from cinderblock.images.port import (
    ACTIVE,
    QUEUED,
    SAVING,
    ImageServiceError,
    ImageSpec,
    check_image_id,
)

_log = logging.getLogger("cinderblock.images.glance")

_RETRYABLE_STATUSES = frozenset({408, 429})
"""Besides every 5xx: request timeout and rate limiting."""

_LOCAL_HASHES = ("sha256", "md5")
"""Computed while streaming, to check what Glance reports (``os_hash_value`` when Glance
hashes with sha256, and the md5 ``checksum``)."""


class GlanceImageService:
    """Glance v2 client behind the `ImageService` port.

    Args:
        endpoint: Glance's public URL, e.g. ``http://glance:9292`` (a trailing ``/v2``
            is accepted too).
        token: sent as ``X-Auth-Token`` when given.
        session: an aiohttp session to use (its owner closes it); without one the
            service makes its own on first use and `close` closes it.
        timeout: seconds for a whole metadata call; for an upload, the limit on
            connecting and on each wait for the server (the transfer itself may take
            as long as it needs).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        token: str | None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 60,
    ) -> None:
        base = endpoint.rstrip("/")
        self._base = base.removesuffix("/v2")
        self._token = token
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout, sock_read=timeout
        )

    async def __aenter__(self) -> GlanceImageService:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session this service made (a session passed in is left open)."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def create(self, spec: ImageSpec, *, request_id: str | None) -> str:
        body: dict[str, Any] = {
            **spec.properties,
            "id": spec.image_id,
            "name": spec.name,
            "disk_format": spec.disk_format,
            "container_format": spec.container_format,
            "visibility": spec.visibility,
            "protected": spec.protected,
            "min_disk": spec.min_disk,
        }
        status, payload = await self._call(
            "create", spec.image_id, "POST", "/v2/images", body=body, request_id=request_id
        )
        if status == 201:
            _log.info(
                "image created",
                extra={"image_id": spec.image_id, "action": "create", "request_id": request_id},
            )
            return str(payload["id"]) if isinstance(payload, dict) else spec.image_id
        if status == 409:
            return await self._existing(spec, request_id)
        raise _error("create", spec.image_id, status, payload)

    async def upload(self, image_id: str, source: Path, *, size: int) -> str:
        check_image_id(image_id)
        image = await self._require(image_id, "upload")
        if image.get("status") != QUEUED:
            return await self._already_uploaded(image, source, size)
        reader = await self._open(image_id, source, size)
        try:
            status, payload = await self._call(
                "upload",
                image_id,
                "PUT",
                f"/v2/images/{quote(image_id)}/file",
                data=reader.stream(),
                headers={"Content-Type": "application/octet-stream"},
                timeout=self._stream_timeout,
                reader=reader,
            )
        finally:
            reader.close()
        if status == 409:  # raced with another upload: judge by what is there now
            return await self._already_uploaded(
                await self._require(image_id, "upload"), source, size
            )
        if status != 204:
            raise _error("upload", image_id, status, payload)
        image = await self._require(image_id, "upload")
        if image.get("status") != ACTIVE:
            raise ImageServiceError(
                f"image is {image.get('status')} after its data was stored",
                retryable=True,
                operation="upload",
                image_id=image_id,
            )
        checksum = _verified(image, reader.hexdigests(), size)
        _log.info("image uploaded", extra={"image_id": image_id, "action": "upload"})
        return checksum

    async def get(self, image_id: str) -> dict[str, Any] | None:
        check_image_id(image_id)
        status, payload = await self._call("get", image_id, "GET", _image_path(image_id))
        if status == 404:
            return None
        if status != 200 or not isinstance(payload, dict):
            raise _error("get", image_id, status, payload)
        return payload

    async def download(self, image_id: str, target: Path, *, start: int, limit: int) -> str:
        """``GET /v2/images/{id}/file`` streamed into `target` (sparse), checked against
        the image's size, md5 ``checksum`` and sha256 multihash when it has one."""
        check_image_id(image_id)
        image = await self._require(image_id, "download")
        if image.get("status") != ACTIVE:
            raise ImageServiceError(
                f"image is {image.get('status')}, not active",
                retryable=False,
                operation="download",
                image_id=image_id,
                status=409,
            )
        headers = {"Accept": "application/octet-stream"}
        if self._token is not None:
            headers["X-Auth-Token"] = self._token
        path = f"/v2/images/{quote(image_id)}/file"
        fd = await asyncio.to_thread(os.open, target, os.O_WRONLY)
        try:
            writer = sparse.SparseWriter(fd, start, limit)
            async with self._session_for_use().get(
                self._base + path, headers=headers, timeout=self._stream_timeout
            ) as response:
                if response.status != 200:
                    raise _error("download", image_id, response.status, await response.text())
                async for piece in response.content.iter_chunked(sparse.CHUNK):
                    await asyncio.to_thread(writer.write, piece)
            await asyncio.to_thread(os.fsync, fd)
        except sparse.TooLargeError as err:
            raise ImageServiceError(
                str(err), retryable=False, operation="download", image_id=image_id
            ) from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise ImageServiceError(
                f"GET {path}: {type(err).__name__}: {err}",
                retryable=True,
                operation="download",
                image_id=image_id,
            ) from err
        finally:
            await asyncio.to_thread(os.close, fd)
        _verified(image, writer.hexdigests(), writer.written)  # raises on other data
        _log.info("image downloaded", extra={"image_id": image_id, "action": "download"})
        return writer.hexdigests()["sha256"]

    async def delete(self, image_id: str) -> None:
        check_image_id(image_id)
        status, payload = await self._call("delete", image_id, "DELETE", _image_path(image_id))
        if status in (204, 404):
            _log.info("image deleted", extra={"image_id": image_id, "action": "delete"})
            return
        raise _error("delete", image_id, status, payload)

    # -- internals -------------------------------------------------------------------

    async def _existing(self, spec: ImageSpec, request_id: str | None) -> str:
        """After a 409 on create: accept the image already registered under this id
        when it is the one we asked for (a retried create)."""
        image = await self.get(spec.image_id)
        if image is None:
            raise ImageServiceError(
                "the id was used before (Glance never reuses an id, even once deleted)",
                retryable=False,
                operation="create",
                image_id=spec.image_id,
                status=409,
            )
        wanted = (spec.image_id, spec.name, spec.disk_format, spec.container_format)
        found = tuple(image.get(key) for key in ("id", "name", "disk_format", "container_format"))
        if found != wanted:
            raise ImageServiceError(
                f"another image holds this id: {found[1:]}",
                retryable=False,
                operation="create",
                image_id=spec.image_id,
                status=409,
            )
        _log.info(
            "image already created",
            extra={"image_id": spec.image_id, "action": "create", "request_id": request_id},
        )
        return spec.image_id

    async def _already_uploaded(self, image: dict[str, Any], source: Path, size: int) -> str:
        """The image is not queued: an earlier upload of ours may have finished. Equal
        bytes (by the checksums Glance reports) make the upload a no-op."""
        image_id = str(image.get("id"))
        state = image.get("status")
        if state in (SAVING, QUEUED):  # another upload is under way, or just failed
            raise ImageServiceError(
                f"image is {state}",
                retryable=True,
                operation="upload",
                image_id=image_id,
                status=409,
            )
        if state != ACTIVE:
            raise ImageServiceError(
                f"image is {state}, not queued",
                retryable=False,
                operation="upload",
                image_id=image_id,
                status=409,
            )
        try:
            local = await asyncio.to_thread(sparse.digests, source, size, _LOCAL_HASHES)
        except (OSError, ValueError) as err:
            raise ImageServiceError(
                str(err), retryable=False, operation="upload", image_id=image_id
            ) from err
        return _verified(image, local, size)

    async def _require(self, image_id: str, operation: str) -> dict[str, Any]:
        image = await self.get(image_id)
        if image is None:
            raise ImageServiceError(
                "no such image", retryable=False, operation=operation, image_id=image_id, status=404
            )
        return image

    async def _open(self, image_id: str, source: Path, size: int) -> _Reader:
        try:
            fd = await asyncio.to_thread(sparse.open_source, source, size)
        except (OSError, ValueError) as err:
            raise ImageServiceError(
                str(err), retryable=False, operation="upload", image_id=image_id
            ) from err
        return _Reader(fd, size)

    def _session_for_use(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _call(
        self,
        operation: str,
        image_id: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        data: AsyncIterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
        reader: _Reader | None = None,
    ) -> tuple[int, Any]:
        """One request; returns the status and the body (parsed JSON, else text).

        Raises:
            ImageServiceError: (retryable) the service could not be reached, the
                connection broke or the call timed out; (not retryable) the source
                file could not be read.
        """
        sent = {"Accept": "application/json", **(headers or {})}
        if self._token is not None:
            sent["X-Auth-Token"] = self._token
        if request_id is not None:
            sent["X-OpenStack-Request-ID"] = request_id
        try:
            async with self._session_for_use().request(
                method,
                self._base + path,
                json=body,
                data=data,
                headers=sent,
                timeout=timeout or self._timeout,
            ) as response:
                text = await response.text()
                return response.status, _parse(text)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            if reader is not None and reader.error is not None:
                raise ImageServiceError(
                    f"reading the source failed: {reader.error}",
                    retryable=False,
                    operation=operation,
                    image_id=image_id,
                ) from reader.error
            raise ImageServiceError(
                f"{method} {path}: {type(err).__name__}: {err}",
                retryable=True,
                operation=operation,
                image_id=image_id,
            ) from err


class _Reader:
    """Feeds the request body: chunks read in a worker thread, holes as zeros, hashed
    on the way, so a file of many GiB streams in constant memory.

    `close` waits for a read in flight (at most one chunk) so the descriptor is never
    closed under a worker thread, whatever becomes of the request.
    """

    def __init__(self, fd: int, size: int) -> None:
        self._fd: int | None = fd
        self._chunks = sparse.chunks(fd, size)
        self._hashers = {name: sparse.new_hash(name) for name in _LOCAL_HASHES}
        self._lock = threading.Lock()
        self.error: OSError | None = None

    def _next(self) -> bytes | None:
        with self._lock:
            if self._fd is None:
                return None
            for _, chunk, _ in self._chunks:
                for hasher in self._hashers.values():
                    hasher.update(chunk)
                return chunk
            return None

    async def stream(self) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await asyncio.to_thread(self._next)
            except OSError as err:
                self.error = err
                raise
            if chunk is None:
                return
            yield chunk

    def hexdigests(self) -> dict[str, str]:
        return {name: hasher.hexdigest() for name, hasher in self._hashers.items()}

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _verified(image: Mapping[str, Any], local: Mapping[str, str], size: int) -> str:
    """Check what Glance reports against the local digests; return Glance's sha256
    (``os_hash_value`` when ``os_hash_algo`` is sha256), else its md5 ``checksum``,
    else the local sha256."""
    image_id = str(image.get("id"))
    reported_size = image.get("size")
    if reported_size is not None and reported_size != size:
        raise _mismatch(image_id, f"size {reported_size}, expected {size}")
    md5 = image.get("checksum")
    if md5 is not None and md5 != local["md5"]:
        raise _mismatch(image_id, f"md5 {md5}, expected {local['md5']}")
    if image.get("os_hash_algo") == "sha256":
        value = image.get("os_hash_value")
        if value != local["sha256"]:
            raise _mismatch(image_id, f"sha256 {value}, expected {local['sha256']}")
        return str(value)
    return str(md5) if md5 is not None else local["sha256"]


def _mismatch(image_id: str, what: str) -> ImageServiceError:
    return ImageServiceError(
        f"the image holds other data: {what}",
        retryable=False,
        operation="upload",
        image_id=image_id,
        status=409,
    )


def _error(operation: str, image_id: str, status: int, payload: Any) -> ImageServiceError:
    retryable = status >= 500 or status in _RETRYABLE_STATUSES
    message = payload if isinstance(payload, str) else str(payload)
    return ImageServiceError(
        message.strip()[:300] or f"HTTP {status}",
        retryable=retryable,
        operation=operation,
        image_id=image_id,
        status=status,
    )


def _image_path(image_id: str) -> str:
    return f"/v2/images/{quote(image_id)}"


def _parse(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text
