"""LocalImageStore: create, sparse upload with sha256, idempotency, delete, restart."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tracemalloc
from pathlib import Path

import pytest

from cinderblock.images.local import LocalImageStore
from cinderblock.images.port import ImageService, ImageServiceError, ImageSpec
from tests.helpers.images import MIB, allocated, sparse_source

pytestmark = pytest.mark.unit

IMAGE_ID = "0a4d2c7e-5b0f-4e4b-9a57-2f8c1d6e3b11"


def spec(image_id: str = IMAGE_ID, **changes: object) -> ImageSpec:
    fields: dict[str, object] = {
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
    return ImageSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> LocalImageStore:
    return LocalImageStore(tmp_path / "images")


def test_is_an_image_service(store: LocalImageStore) -> None:
    assert isinstance(store, ImageService)


async def test_create_registers_a_queued_image(store: LocalImageStore) -> None:
    assert await store.create(spec(), request_id="req-1") == IMAGE_ID

    image = await store.get(IMAGE_ID)
    assert image is not None
    assert image["status"] == "queued"
    assert image["name"] == "backup-of-vol"
    assert (image["disk_format"], image["container_format"]) == ("raw", "bare")
    assert (image["visibility"], image["protected"], image["min_disk"]) == ("private", False, 8)
    assert image["cinder_volume_id"] == "vol-1"  # properties are top-level, as in Glance


async def test_create_is_idempotent_for_the_same_image(store: LocalImageStore) -> None:
    await store.create(spec(), request_id=None)
    assert await store.create(spec(), request_id=None) == IMAGE_ID

    with pytest.raises(ImageServiceError) as caught:
        await store.create(spec(name="another"), request_id=None)
    assert (caught.value.retryable, caught.value.status) == (False, 409)


async def test_upload_copies_the_bytes_and_returns_their_sha256(
    store: LocalImageStore, tmp_path: Path
) -> None:
    source = sparse_source(tmp_path / "volume.img")
    await store.create(spec(), request_id=None)

    checksum = await store.upload(IMAGE_ID, source.path, size=source.size)

    content = source.content()
    assert checksum == hashlib.sha256(content).hexdigest()
    assert store.image_path(IMAGE_ID).read_bytes() == content
    image = await store.get(IMAGE_ID)
    assert image is not None
    assert image["status"] == "active"
    assert image["size"] == source.size
    assert (image["os_hash_algo"], image["os_hash_value"]) == ("sha256", checksum)


async def test_upload_keeps_holes_and_skips_zero_chunks(
    store: LocalImageStore, tmp_path: Path
) -> None:
    source = sparse_source(tmp_path / "volume.img")
    await store.create(spec(), request_id=None)

    await store.upload(IMAGE_ID, source.path, size=source.size)

    target = store.image_path(IMAGE_ID)
    assert target.stat().st_size == source.size
    # The written MiB of zeros is allocated in the source but not in the image.
    assert allocated(source.path) >= 2 * MIB
    assert allocated(target) < allocated(source.path)
    assert allocated(target) <= 1 * MIB + 3 * 64 * 1024  # the random MiB plus small extents


async def test_upload_of_a_prefix_truncates_to_size(store: LocalImageStore, tmp_path: Path) -> None:
    source = sparse_source(tmp_path / "volume.img")
    await store.create(spec(), request_id=None)

    checksum = await store.upload(IMAGE_ID, source.path, size=4 * MIB)

    prefix = source.content()[: 4 * MIB]
    assert checksum == hashlib.sha256(prefix).hexdigest()
    assert store.image_path(IMAGE_ID).read_bytes() == prefix


async def test_upload_again_with_the_same_bytes_is_a_no_op(
    store: LocalImageStore, tmp_path: Path
) -> None:
    source = sparse_source(tmp_path / "volume.img")
    await store.create(spec(), request_id=None)
    first = await store.upload(IMAGE_ID, source.path, size=source.size)
    before = store.image_path(IMAGE_ID).stat()

    again = await store.upload(IMAGE_ID, source.path, size=source.size)

    after = store.image_path(IMAGE_ID).stat()
    assert again == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


async def test_upload_of_other_bytes_to_an_active_image_is_refused(
    store: LocalImageStore, tmp_path: Path
) -> None:
    source = sparse_source(tmp_path / "volume.img")
    other = sparse_source(tmp_path / "other.img", extents=((0, b"different"),))
    await store.create(spec(), request_id=None)
    await store.upload(IMAGE_ID, source.path, size=source.size)

    with pytest.raises(ImageServiceError) as caught:
        await store.upload(IMAGE_ID, other.path, size=other.size)

    assert (caught.value.retryable, caught.value.status) == (False, 409)
    assert store.image_path(IMAGE_ID).read_bytes() == source.content()


async def test_upload_errors_are_permanent(store: LocalImageStore, tmp_path: Path) -> None:
    source = sparse_source(tmp_path / "volume.img")
    with pytest.raises(ImageServiceError) as unknown:
        await store.upload(IMAGE_ID, source.path, size=source.size)
    assert (unknown.value.retryable, unknown.value.status) == (False, 404)

    await store.create(spec(), request_id=None)
    with pytest.raises(ImageServiceError) as too_small:
        await store.upload(IMAGE_ID, source.path, size=source.size + 1)
    with pytest.raises(ImageServiceError) as missing:
        await store.upload(IMAGE_ID, tmp_path / "nothing.img", size=1)
    assert not too_small.value.retryable
    assert not missing.value.retryable
    image = await store.get(IMAGE_ID)
    assert image is not None
    assert image["status"] == "queued"  # a failed upload leaves the image uploadable
    assert not store.image_path(IMAGE_ID).exists()


async def test_concurrent_uploads_of_one_image_store_it_once(
    store: LocalImageStore, tmp_path: Path
) -> None:
    source = sparse_source(tmp_path / "volume.img")
    await store.create(spec(), request_id=None)

    results = await asyncio.gather(
        *(store.upload(IMAGE_ID, source.path, size=source.size) for _ in range(3))
    )

    assert len(set(results)) == 1
    assert store.image_path(IMAGE_ID).read_bytes() == source.content()


async def test_a_large_sparse_image_streams_in_constant_memory(
    store: LocalImageStore, tmp_path: Path
) -> None:
    size = 1024 * MIB
    source = sparse_source(
        tmp_path / "big.img", size=size, extents=((0, b"x" * 4096), (700 * MIB, b"y" * 4096))
    )
    await store.create(spec(), request_id=None)

    tracemalloc.start()
    try:
        checksum = await store.upload(IMAGE_ID, source.path, size=size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    expected = hashlib.sha256()
    with source.path.open("rb") as file:
        while chunk := file.read(8 * MIB):
            expected.update(chunk)
    assert checksum == expected.hexdigest()
    assert peak < 16 * MIB
    assert allocated(store.image_path(IMAGE_ID)) < 4 * MIB


async def test_delete_removes_the_image_and_tolerates_a_missing_one(
    store: LocalImageStore, tmp_path: Path
) -> None:
    source = sparse_source(tmp_path / "volume.img")
    await store.create(spec(), request_id=None)
    await store.upload(IMAGE_ID, source.path, size=source.size)

    await store.delete(IMAGE_ID)
    await store.delete(IMAGE_ID)

    assert await store.get(IMAGE_ID) is None
    assert not store.image_path(IMAGE_ID).exists()


async def test_a_protected_image_is_not_deleted(store: LocalImageStore) -> None:
    await store.create(spec(protected=True), request_id=None)

    with pytest.raises(ImageServiceError) as caught:
        await store.delete(IMAGE_ID)

    assert (caught.value.retryable, caught.value.status) == (False, 403)
    assert await store.get(IMAGE_ID) is not None


async def test_a_restarted_store_keeps_images_and_drops_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "images"
    source = sparse_source(tmp_path / "volume.img")
    first = LocalImageStore(root)
    await first.create(spec(), request_id=None)
    checksum = await first.upload(IMAGE_ID, source.path, size=source.size)
    leftover = root / f".{IMAGE_ID}.img.deadbeef.tmp"
    orphan = root / "no-record.img"
    leftover.write_bytes(b"half")
    orphan.write_bytes(b"data")

    again = LocalImageStore(root)

    image = await again.get(IMAGE_ID)
    assert image is not None
    assert image["os_hash_value"] == checksum
    assert not leftover.exists()
    assert not orphan.exists()
    assert json.loads((root / f"{IMAGE_ID}.json").read_text())["status"] == "active"


def test_spec_and_ids_are_checked(store: LocalImageStore) -> None:
    with pytest.raises(ValueError, match="core image attributes"):
        spec(properties={"status": "active"})
    with pytest.raises(ValueError, match="safe"):
        spec(image_id="../etc")
    with pytest.raises(ValueError, match="min_disk"):
        spec(min_disk=-1)
    with pytest.raises(ValueError, match="safe"):
        store.image_path("a/b")
    assert not any(name.endswith(".tmp") for name in os.listdir(store.image_path("x").parent))


async def test_download_writes_the_image_sparse_at_an_offset(
    store: LocalImageStore, tmp_path: Path
) -> None:
    source = sparse_source(tmp_path / "volume.img")
    await store.create(spec(), request_id=None)
    checksum = await store.upload(IMAGE_ID, source.path, size=source.size)
    target = tmp_path / "target.img"
    with target.open("wb") as f:
        f.truncate(source.size + 4 * MIB)

    found = await store.download(IMAGE_ID, target, start=MIB, limit=source.size + 3 * MIB)

    assert found == checksum
    assert target.read_bytes()[MIB : MIB + source.size] == source.content()
    assert allocated(target) <= 1 * MIB + 3 * 64 * 1024  # zero chunks were not written
    with pytest.raises(ImageServiceError) as too_big:
        await store.download(IMAGE_ID, target, start=0, limit=source.size - 1)
    assert too_big.value.retryable is False


async def test_download_needs_an_active_image(store: LocalImageStore, tmp_path: Path) -> None:
    target = tmp_path / "target.img"
    target.write_bytes(b"")
    with pytest.raises(ImageServiceError) as missing:
        await store.download(IMAGE_ID, target, start=0, limit=MIB)
    assert (missing.value.status, missing.value.retryable) == (404, False)
    await store.create(spec(), request_id=None)
    with pytest.raises(ImageServiceError) as queued:
        await store.download(IMAGE_ID, target, start=0, limit=MIB)
    assert (queued.value.status, queued.value.retryable) == (409, False)
