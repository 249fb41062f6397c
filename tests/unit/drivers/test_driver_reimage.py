"""reimage_volume on the file driver (and through the fault injector): the writer fills a
temp copy of the volume's size that replaces the volume in one rename; an encrypted
volume's header is kept; a failing writer leaves the volume and the pool as they were."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from cinderblock.drivers.base import GIB, BackendError, ImageWriter, VolumeDriver
from cinderblock.drivers.encryption import EncryptionHeader, header_of
from tests.unit.drivers.given import SMALL, allocated, files_in, read_at, write_at

pytestmark = pytest.mark.unit

VOL = "vol-reimage"
IMAGE = b"the image's first bytes"


def writer(data: bytes, calls: list[tuple[int, int]]) -> ImageWriter:
    async def write(target: Path, start: int, limit: int) -> str:
        calls.append((start, limit))

        def put() -> None:
            with target.open("r+b") as f:
                f.seek(start)
                f.write(data)

        await asyncio.to_thread(put)
        return hashlib.sha256(data).hexdigest()

    return write


async def test_the_image_replaces_the_volume(driver: VolumeDriver) -> None:
    location = await driver.create_volume(VOL, 1, location=SMALL, step_key="c")
    path = driver.volume_path(VOL, location)
    write_at(path, {4096: 100, 500 * 2**20: 100})
    before = allocated(driver)
    calls: list[tuple[int, int]] = []

    found = await driver.reimage_volume(VOL, location, write=writer(IMAGE, calls), step_key="r")

    assert found == hashlib.sha256(IMAGE).hexdigest()
    assert calls == [(0, GIB)]
    assert read_at(path, 0, len(IMAGE)) == IMAGE
    assert read_at(path, 500 * 2**20, 100) == bytes(100)  # the old data is gone
    assert path.stat().st_size == GIB
    assert allocated(driver) == before
    assert files_in(path.parent) == [path.name]


async def test_an_encrypted_volume_keeps_its_header(driver: VolumeDriver) -> None:
    header = EncryptionHeader("luks", "aes-xts-plain64", 256, "key-1")
    location = await driver.create_volume(VOL, 1, location=SMALL, step_key="c", header=header)
    path = driver.volume_path(VOL, location)
    calls: list[tuple[int, int]] = []

    await driver.reimage_volume(VOL, location, write=writer(IMAGE, calls), step_key="r")

    assert calls == [(header.size, GIB - header.size)]
    kept = header_of(path)
    assert kept is not None
    assert kept["key_id"] == "key-1"
    assert read_at(path, header.size, len(IMAGE)) == IMAGE


async def test_a_failing_writer_leaves_the_volume_as_it_was(driver: VolumeDriver) -> None:
    location = await driver.create_volume(VOL, 1, location=SMALL, step_key="c")
    path = driver.volume_path(VOL, location)
    write_at(path, {0: 64})
    old = read_at(path, 0, 64)
    before = allocated(driver)

    async def broken(target: Path, start: int, limit: int) -> str:
        await asyncio.to_thread(target.write_bytes, b"half")
        raise RuntimeError("the image service went away")

    with pytest.raises(RuntimeError):
        await driver.reimage_volume(VOL, location, write=broken, step_key="r")

    assert read_at(path, 0, 64) == old
    assert files_in(path.parent) == [path.name]
    assert allocated(driver) == before


async def test_a_missing_volume_is_a_backend_error(driver: VolumeDriver) -> None:
    with pytest.raises(BackendError, match="not found"):
        await driver.reimage_volume(VOL, SMALL, write=writer(IMAGE, []), step_key="r")
