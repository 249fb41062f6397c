"""The file driver's encryption header model: header sizes, the fit rule, what to extend
to, and the re-encrypting copy (payload moved behind the new header, idempotent, nothing
left when it cannot fit or does not verify)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cinderblock.drivers import encryption
from cinderblock.drivers.base import GIB, BackendError, before_verify
from cinderblock.drivers.copying import content_digest, flip_byte
from cinderblock.drivers.encryption import (
    LUKS1_HEADER,
    LUKS2_HEADER,
    MAGIC,
    EncryptionHeader,
    NoRoomForDataError,
)
from cinderblock.drivers.file import FileDriver
from tests.unit.drivers.given import (
    LARGE,
    MIB,
    POOLS,
    SMALL,
    allocated,
    pattern,
    read_at,
    write_at,
)

LUKS = EncryptionHeader("luks", "aes-xts-plain64", 256, "key-1")


@pytest.mark.parametrize(
    ("provider", "size"),
    [
        ("luks", 2 * MIB),
        ("LUKS", 2 * MIB),
        ("nova.volume.encryptors.luks.LuksEncryptor", 2 * MIB),
        ("luks2", 16 * MIB),
        ("plain", 0),
        ("nova.volume.encryptors.cryptsetup.CryptsetupEncryptor", 0),
        ("something-else", 2 * MIB),
        (None, 2 * MIB),
    ],
)
def test_header_sizes(provider: str | None, size: int) -> None:
    assert encryption.header_bytes(provider) == size


def test_fit_rule_and_what_to_extend_to() -> None:
    assert encryption.usable_bytes(GIB, LUKS1_HEADER) == GIB - 2 * MIB
    assert encryption.usable_bytes(MIB, LUKS2_HEADER) == 0
    # data that uses a whole 1 GiB unencrypted volume does not fit behind a header
    assert not encryption.fits(GIB, GIB, LUKS1_HEADER)
    assert encryption.fits(GIB - 2 * MIB, GIB, LUKS1_HEADER)
    assert encryption.fits(GIB, 2 * GIB, LUKS2_HEADER)  # after an extend by 1 GiB
    assert encryption.size_needed_gb(GIB, LUKS1_HEADER) == 2
    assert encryption.size_needed_gb(GIB - 2 * MIB, LUKS1_HEADER) == 1
    assert encryption.size_needed_gb(5 * GIB, LUKS2_HEADER) == 6
    assert encryption.size_needed_gb(0, 0) == 0


def test_header_record_round_trip(tmp_path: Path) -> None:
    image = tmp_path / "image"
    image.write_bytes(bytes(4 * MIB))
    assert encryption.header_of(image) is None
    encryption.write_header(image, LUKS)
    record = encryption.header_of(image)
    assert record is not None
    assert (record["key_id"], record["header_bytes"]) == ("key-1", LUKS1_HEADER)
    assert read_at(image, 0, len(MAGIC)) == MAGIC
    assert EncryptionHeader("plain", None, None, "k").encode() == b""


async def test_create_writes_the_header_inside_the_size(tmp_path: Path) -> None:
    driver = FileDriver(tmp_path, POOLS)
    where = await driver.create_volume("v1", 1, location=SMALL, step_key="s1", header=LUKS)
    path = driver.volume_path("v1", where)
    assert path.stat().st_size == GIB
    assert encryption.header_of(path)["key_id"] == "key-1"  # type: ignore[index]
    again = await driver.create_volume("v1", 1, location=SMALL, step_key="s1", header=LUKS)
    assert again == where


async def test_unencrypted_full_volume_does_not_fit_and_nothing_changes(tmp_path: Path) -> None:
    driver = FileDriver(tmp_path, POOLS)
    where = await driver.create_volume("v1", 1, location=SMALL, step_key="s1")
    path = driver.volume_path("v1", where)
    write_at(path, {0: 4096, GIB - 4096: 4096})
    before, used = content_digest(path), allocated(driver)
    with pytest.raises(NoRoomForDataError, match="extend the volume to 2 GiB"):
        await driver.reencrypt_volume("v1", where, where, target=LUKS, step_key="r1")
    with pytest.raises(NoRoomForDataError):
        await driver.reencrypt_volume("v1", where, LARGE, target=LUKS, step_key="r1")
    assert content_digest(path) == before
    assert allocated(driver) == used
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert not driver.volume_path("v1", LARGE).exists()


async def test_reencrypt_in_place_moves_the_payload_behind_the_header(tmp_path: Path) -> None:
    driver = FileDriver(tmp_path, POOLS)
    where = await driver.create_volume("v1", 2, location=SMALL, step_key="s1")
    path = driver.volume_path("v1", where)
    write_at(path, {0: 4096, GIB - 4096: 4096})
    payload = encryption.payload_digest(path)
    used = allocated(driver)
    assert await driver.reencrypt_volume("v1", where, where, target=LUKS, step_key="r1") == where
    assert read_at(path, 0, len(MAGIC)) == MAGIC
    assert read_at(path, LUKS1_HEADER, 4096) == read_at_pattern(0)
    assert encryption.payload_digest(path) == payload
    assert path.stat().st_size == 2 * GIB
    assert allocated(driver) == used
    digest = content_digest(path)
    # a redelivered step finds the work done (same key id) and leaves the image alone
    assert await driver.reencrypt_volume("v1", where, where, target=LUKS, step_key="r1") == where
    assert content_digest(path) == digest
    # another cipher (new key), then no encryption at all: the payload follows each time
    cbc = EncryptionHeader("luks", "aes-cbc-essiv:sha256", 256, "key-2")
    await driver.reencrypt_volume("v1", where, where, target=cbc, step_key="r2")
    assert encryption.header_of(path)["cipher"] == "aes-cbc-essiv:sha256"  # type: ignore[index]
    await driver.reencrypt_volume("v1", where, where, target=None, step_key="r3")
    assert encryption.header_of(path) is None
    assert read_at(path, 0, 4096) == read_at_pattern(0)
    assert encryption.payload_digest(path) == payload


async def test_reencrypt_to_another_pool_keeps_the_source(tmp_path: Path) -> None:
    driver = FileDriver(tmp_path, POOLS)
    where = await driver.create_volume("v1", 1, location=SMALL, step_key="s1", header=LUKS)
    source = driver.volume_path("v1", where)
    write_at(source, {LUKS1_HEADER: 4096})
    before = content_digest(source)
    assert await driver.reencrypt_volume("v1", where, LARGE, target=None, step_key="r1") == LARGE
    copy = driver.volume_path("v1", LARGE)
    assert read_at(copy, 0, 4096) == read_at_pattern(LUKS1_HEADER)
    assert content_digest(source) == before
    assert allocated(driver)[LARGE] == 1
    assert await driver.reencrypt_volume("v1", where, LARGE, target=None, step_key="r1") == LARGE


async def test_a_copy_that_does_not_verify_leaves_nothing(tmp_path: Path) -> None:
    driver = FileDriver(tmp_path, POOLS)
    where = await driver.create_volume("v1", 2, location=SMALL, step_key="s1")
    path = driver.volume_path("v1", where)
    write_at(path, {0: 4096})
    before, used = content_digest(path), allocated(driver)
    token = before_verify.set(flip_byte)
    try:
        with pytest.raises(BackendError, match="checksum mismatch"):
            await driver.reencrypt_volume("v1", where, where, target=LUKS, step_key="r1")
        with pytest.raises(BackendError, match="checksum mismatch"):
            await driver.reencrypt_volume("v1", where, LARGE, target=LUKS, step_key="r1")
    finally:
        before_verify.reset(token)
    assert content_digest(path) == before
    assert allocated(driver) == used
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert list(driver.volume_path("v1", LARGE).parent.iterdir()) == []


def read_at_pattern(offset: int) -> bytes:
    return pattern(offset, 4096)
