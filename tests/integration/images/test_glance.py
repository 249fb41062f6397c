"""GlanceImageService against a small Glance-v2-shaped server run in the test's loop.

The server keeps images in memory with Glance's statuses (queued → saving → active),
stores or hashes the uploaded bytes, reports `checksum` (md5) and the multihash
(`os_hash_algo` / `os_hash_value`), and can be told to answer the next call of an
operation with an error status or to hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from cinderblock.images.glance import GlanceImageService
from cinderblock.images.port import ImageService, ImageServiceError, ImageSpec
from tests.helpers.images import MIB, sparse_source

pytestmark = pytest.mark.integration

TOKEN = "admin:project-1"
IMAGE_ID = "6f0c8a52-1a3e-4f55-9d0f-8e4b1c2d3a40"
DISK_FORMATS = {"ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "ploop", "iso"}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FakeGlance:
    """State of the test server, and the knobs a test turns."""

    hashing_algorithm: str = "sha256"
    keep_data: bool = True
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, bytes] = field(default_factory=dict)
    used_ids: set[str] = field(default_factory=set)
    statuses: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    seen: list[Seen] = field(default_factory=list)
    fail: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    hang: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def fail_next(self, operation: str, *statuses: int) -> None:
        """Answer the next calls of `operation` (create/upload/show/delete) with these."""
        self.fail[operation].extend(statuses)

    def set_status(self, image_id: str, status: str) -> None:
        self.images[image_id]["status"] = status
        self.statuses[image_id].append(status)

    def requests(self, method: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.method == method]


def glance_app(glance: FakeGlance) -> web.Application:
    async def injected(operation: str, request: web.Request) -> web.Response | None:
        if operation in glance.hang:
            await glance.release.wait()
        if glance.fail[operation]:
            status = glance.fail[operation].pop(0)
            async for _ in request.content.iter_chunked(MIB):  # read it all, as Glance does
                pass
            return web.Response(status=status, text=f"{status} injected")
        return None

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        glance.seen.append(Seen(request.method, request.path, dict(request.headers)))
        if request.headers.get("X-Auth-Token") != TOKEN:
            return web.Response(status=401, text="401 Unauthorized")
        response: web.StreamResponse = await handler(request)
        return response

    async def create(request: web.Request) -> web.Response:
        if (failure := await injected("create", request)) is not None:
            return failure
        body = await request.json()
        image_id = body.get("id")
        if image_id in glance.used_ids:
            return web.Response(status=409, text=f"Image with identifier {image_id} exists")
        if body.get("disk_format") not in DISK_FORMATS:
            return web.Response(status=400, text="Invalid value for disk_format")
        if any(not isinstance(value, str) for key, value in body.items() if key not in CORE):
            return web.Response(status=400, text="additional properties must be strings")
        image = {
            **body,
            "status": "queued",
            "size": None,
            "checksum": None,
            "os_hash_algo": None,
            "os_hash_value": None,
            "self": f"/v2/images/{image_id}",
            "file": f"/v2/images/{image_id}/file",
            "schema": "/v2/schemas/image",
        }
        glance.images[image_id] = image
        glance.used_ids.add(image_id)
        glance.statuses[image_id].append("queued")
        return web.json_response(image, status=201, headers={"Location": image["self"]})

    async def upload(request: web.Request) -> web.Response:
        image_id = request.match_info["image_id"]
        if (failure := await injected("upload", request)) is not None:
            return failure
        if image_id not in glance.images:
            return web.Response(status=404, text="404 Not Found")
        if request.content_type != "application/octet-stream":
            return web.Response(status=415, text="415 Unsupported Media Type")
        if glance.images[image_id]["status"] != "queued":
            return web.Response(status=409, text="Image status transition is not allowed")
        glance.set_status(image_id, "saving")
        md5, multihash = hashlib.md5(), hashlib.new(glance.hashing_algorithm)
        stored, size = bytearray(), 0
        async for chunk in request.content.iter_chunked(MIB):
            md5.update(chunk)
            multihash.update(chunk)
            size += len(chunk)
            if glance.keep_data:
                stored += chunk
        glance.data[image_id] = bytes(stored)
        glance.images[image_id].update(
            size=size,
            checksum=md5.hexdigest(),
            os_hash_algo=glance.hashing_algorithm,
            os_hash_value=multihash.hexdigest(),
        )
        glance.set_status(image_id, "active")
        return web.Response(status=204)

    async def show(request: web.Request) -> web.Response:
        if (failure := await injected("show", request)) is not None:
            return failure
        image = glance.images.get(request.match_info["image_id"])
        if image is None:
            return web.Response(status=404, text="404 Not Found")
        return web.json_response(image)

    async def download(request: web.Request) -> web.Response:
        if (failure := await injected("download", request)) is not None:
            return failure
        data = glance.data.get(request.match_info["image_id"])
        if data is None:
            return web.Response(status=404, text="404 Not Found")
        return web.Response(body=data, content_type="application/octet-stream")

    async def delete(request: web.Request) -> web.Response:
        if (failure := await injected("delete", request)) is not None:
            return failure
        image = glance.images.get(request.match_info["image_id"])
        if image is None:
            return web.Response(status=404, text="404 Not Found")
        if image["protected"]:
            return web.Response(status=403, text="Image is protected")
        del glance.images[image["id"]]
        return web.Response(status=204)

    app = web.Application(middlewares=[record], client_max_size=MIB)
    app.router.add_post("/v2/images", create)
    app.router.add_put("/v2/images/{image_id}/file", upload)
    app.router.add_get("/v2/images/{image_id}", show)
    app.router.add_get("/v2/images/{image_id}/file", download)
    app.router.add_delete("/v2/images/{image_id}", delete)
    return app


CORE = {"id", "name", "disk_format", "container_format", "visibility", "protected", "min_disk"}


@dataclass
class Running:
    glance: FakeGlance
    endpoint: str
    session: aiohttp.ClientSession

    def service(self, *, token: str | None = TOKEN, timeout: float = 10) -> GlanceImageService:
        return GlanceImageService(self.endpoint, token=token, session=self.session, timeout=timeout)


@pytest_asyncio.fixture(loop_scope="session")
async def running() -> AsyncIterator[Running]:
    glance = FakeGlance()
    runner = web.AppRunner(glance_app(glance))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as session:
            yield Running(glance, f"http://{host}:{port}", session)
    finally:
        glance.release.set()
        await runner.cleanup()


def spec(image_id: str = IMAGE_ID, **changes: Any) -> ImageSpec:
    fields: dict[str, Any] = {
        "image_id": image_id,
        "name": "backup-of-vol",
        "disk_format": "raw",
        "container_format": "bare",
        "visibility": "private",
        "protected": False,
        "min_disk": 8,
        "properties": {"cinder_volume_id": "vol-1"},
    }
    fields.update(changes)
    return ImageSpec(**fields)


async def test_upload_stores_the_bytes_and_the_image_becomes_active(
    running: Running, tmp_path: Path
) -> None:
    source = sparse_source(tmp_path / "volume.img")
    service = running.service()
    assert isinstance(service, ImageService)

    assert await service.create(spec(), request_id="req-upload-1") == IMAGE_ID
    checksum = await service.upload(IMAGE_ID, source.path, size=source.size)

    content = source.content()
    glance = running.glance
    assert glance.data[IMAGE_ID] == content
    assert checksum == hashlib.sha256(content).hexdigest()
    assert glance.statuses[IMAGE_ID] == ["queued", "saving", "active"]
    image = await service.get(IMAGE_ID)
    assert image is not None
    assert (image["status"], image["size"], image["os_hash_value"]) == (
        "active",
        source.size,
        checksum,
    )


async def test_create_sends_the_image_as_glance_expects(running: Running) -> None:
    await running.service().create(spec(), request_id="req-create-1")

    (post,) = running.glance.requests("POST")
    assert post.path == "/v2/images"
    image = running.glance.images[IMAGE_ID]
    assert {key: image[key] for key in CORE} == {
        "id": IMAGE_ID,
        "name": "backup-of-vol",
        "disk_format": "raw",
        "container_format": "bare",
        "visibility": "private",
        "protected": False,
        "min_disk": 8,
    }
    assert image["cinder_volume_id"] == "vol-1"


async def test_token_and_request_id_headers_are_sent(running: Running, tmp_path: Path) -> None:
    source = sparse_source(tmp_path / "volume.img")
    service = running.service()

    await service.create(spec(), request_id="req-3f2a")
    await service.upload(IMAGE_ID, source.path, size=source.size)
    await service.delete(IMAGE_ID)

    seen = running.glance.seen
    assert {request.method for request in seen} == {"POST", "GET", "PUT", "DELETE"}
    assert all(request.headers["X-Auth-Token"] == TOKEN for request in seen)
    (post,) = running.glance.requests("POST")
    assert post.headers["X-OpenStack-Request-ID"] == "req-3f2a"
    (put,) = running.glance.requests("PUT")
    assert put.headers["Content-Type"] == "application/octet-stream"
    assert put.headers["Transfer-Encoding"] == "chunked"


async def test_without_a_token_no_token_header_is_sent(running: Running) -> None:
    with pytest.raises(ImageServiceError) as caught:
        await running.service(token=None).create(spec(), request_id=None)

    assert (caught.value.status, caught.value.retryable) == (401, False)
    assert "X-Auth-Token" not in running.glance.seen[0].headers
    assert "X-OpenStack-Request-ID" not in running.glance.seen[0].headers


async def test_create_again_accepts_the_existing_image(running: Running) -> None:
    service = running.service()
    await service.create(spec(), request_id=None)

    assert await service.create(spec(), request_id=None) == IMAGE_ID

    assert len(running.glance.requests("POST")) == 2  # the second was answered 409


async def test_create_with_an_id_held_by_another_image_is_refused(running: Running) -> None:
    service = running.service()
    await service.create(spec(), request_id=None)

    with pytest.raises(ImageServiceError) as other:
        await service.create(spec(name="someone else's"), request_id=None)
    await service.delete(IMAGE_ID)
    with pytest.raises(ImageServiceError) as reused:
        await service.create(spec(), request_id=None)

    assert (other.value.status, other.value.retryable) == (409, False)
    assert (reused.value.status, reused.value.retryable) == (409, False)


async def test_upload_again_is_a_no_op(running: Running, tmp_path: Path) -> None:
    source = sparse_source(tmp_path / "volume.img")
    service = running.service()
    await service.create(spec(), request_id=None)
    first = await service.upload(IMAGE_ID, source.path, size=source.size)

    assert await service.upload(IMAGE_ID, source.path, size=source.size) == first

    assert len(running.glance.requests("PUT")) == 1


async def test_upload_of_other_bytes_to_an_active_image_is_refused(
    running: Running, tmp_path: Path
) -> None:
    source = sparse_source(tmp_path / "volume.img")
    other = sparse_source(tmp_path / "other.img", extents=((0, b"other"),))
    service = running.service()
    await service.create(spec(), request_id=None)
    await service.upload(IMAGE_ID, source.path, size=source.size)

    with pytest.raises(ImageServiceError) as caught:
        await service.upload(IMAGE_ID, other.path, size=other.size)

    assert (caught.value.status, caught.value.retryable) == (409, False)


async def test_with_glance_default_sha512_the_md5_checksum_is_returned(
    running: Running, tmp_path: Path
) -> None:
    running.glance.hashing_algorithm = "sha512"
    source = sparse_source(tmp_path / "volume.img")
    service = running.service()
    await service.create(spec(), request_id=None)

    checksum = await service.upload(IMAGE_ID, source.path, size=source.size)

    assert checksum == hashlib.md5(source.content()).hexdigest()


async def test_server_errors_are_retryable_and_a_retry_succeeds(
    running: Running, tmp_path: Path
) -> None:
    source = sparse_source(tmp_path / "volume.img")
    service = running.service()
    running.glance.fail_next("create", 500)
    running.glance.fail_next("upload", 503)

    with pytest.raises(ImageServiceError) as create_failed:
        await service.create(spec(), request_id=None)
    await service.create(spec(), request_id=None)
    with pytest.raises(ImageServiceError) as upload_failed:
        await service.upload(IMAGE_ID, source.path, size=source.size)
    checksum = await service.upload(IMAGE_ID, source.path, size=source.size)

    assert (create_failed.value.status, create_failed.value.retryable) == (500, True)
    assert (upload_failed.value.status, upload_failed.value.retryable) == (503, True)
    assert checksum == hashlib.sha256(source.content()).hexdigest()
    assert running.glance.data[IMAGE_ID] == source.content()


async def test_client_errors_are_not_retryable(running: Running, tmp_path: Path) -> None:
    source = sparse_source(tmp_path / "volume.img")
    service = running.service()
    with pytest.raises(ImageServiceError) as bad_request:
        await service.create(spec(disk_format="floppy"), request_id=None)
    await service.create(spec(), request_id=None)
    running.glance.fail_next("upload", 413)
    with pytest.raises(ImageServiceError) as too_large:
        await service.upload(IMAGE_ID, source.path, size=source.size)
    with pytest.raises(ImageServiceError) as unknown:
        await service.upload("no-such-image", source.path, size=source.size)

    assert (bad_request.value.status, bad_request.value.retryable) == (400, False)
    assert (too_large.value.status, too_large.value.retryable) == (413, False)
    assert (unknown.value.status, unknown.value.retryable) == (404, False)


async def test_a_timeout_is_retryable(running: Running) -> None:
    running.glance.hang.add("show")

    with pytest.raises(ImageServiceError) as caught:
        await running.service(timeout=0.2).get(IMAGE_ID)

    assert (caught.value.status, caught.value.retryable) == (None, True)


async def test_an_unreachable_service_is_retryable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with GlanceImageService(f"http://127.0.0.1:{port}", token=TOKEN, timeout=2) as service:
        with pytest.raises(ImageServiceError) as caught:
            await service.get(IMAGE_ID)

    assert caught.value.retryable


async def test_get_and_delete(running: Running) -> None:
    service = running.service()
    assert await service.get(IMAGE_ID) is None
    await service.delete(IMAGE_ID)  # missing: fine
    await service.create(spec(protected=True), request_id=None)
    await service.create(spec("7d1e2f30-0000-4000-8000-000000000001"), request_id=None)

    with pytest.raises(ImageServiceError) as protected:
        await service.delete(IMAGE_ID)
    await service.delete("7d1e2f30-0000-4000-8000-000000000001")

    assert (protected.value.status, protected.value.retryable) == (403, False)
    assert await service.get("7d1e2f30-0000-4000-8000-000000000001") is None
    image = await service.get(IMAGE_ID)
    assert image is not None
    assert image["status"] == "queued"


async def test_a_large_sparse_file_streams_through(running: Running, tmp_path: Path) -> None:
    size = 512 * MIB
    source = sparse_source(
        tmp_path / "big.img", size=size, extents=((MIB, b"a" * 4096), (400 * MIB, b"b" * 4096))
    )
    running.glance.keep_data = False
    async with GlanceImageService(running.endpoint, token=TOKEN) as service:  # own session
        await service.create(spec(), request_id=None)
        checksum = await service.upload(IMAGE_ID, source.path, size=size)

    image = running.glance.images[IMAGE_ID]
    assert (image["status"], image["size"], image["os_hash_value"]) == ("active", size, checksum)


async def test_endpoint_with_version_suffix(running: Running) -> None:
    service = GlanceImageService(running.endpoint + "/v2/", token=TOKEN, session=running.session)

    assert await service.create(spec(), request_id=None) == IMAGE_ID


async def test_download_writes_the_image_sparse_and_checks_it(
    running: Running, tmp_path: Path
) -> None:
    service = running.service()
    image_id = str(uuid.uuid4())
    source = sparse_source(tmp_path / "volume.img")
    await service.create(
        ImageSpec(image_id, "dl", "raw", "bare", "private", False, 1), request_id=None
    )
    checksum = await service.upload(image_id, source.path, size=source.size)
    target = tmp_path / "target.img"
    with target.open("wb") as f:
        f.truncate(source.size + MIB)

    found = await service.download(image_id, target, start=MIB, limit=source.size)

    assert found == checksum == hashlib.sha256(source.content()).hexdigest()
    assert target.read_bytes()[MIB:] == source.content()
    running.glance.data[image_id] = b"x" + source.content()[1:]  # Glance now serves other bytes
    with pytest.raises(ImageServiceError) as other:
        await service.download(image_id, target, start=MIB, limit=source.size)
    assert (other.value.retryable, other.value.status) == (False, 409)
    running.glance.fail_next("download", 503)
    with pytest.raises(ImageServiceError) as down:
        await service.download(image_id, target, start=MIB, limit=source.size)
    assert down.value.retryable is True
