"""Volumes made from a snapshot or a volume (file driver and fault wrapper): the source's
bytes, verified, sparse, grown with zeros; a redelivery never copies twice; a missing source
or a bad copy leaves nothing behind."""

from __future__ import annotations

import pytest

from cinderblock.drivers import copying, encryption
from cinderblock.drivers.base import GIB, BackendError, CapacityError, VolumeDriver, before_verify
from cinderblock.drivers.encryption import EncryptionHeader
from tests.unit.drivers.given import (
    MIB,
    SMALL,
    MakeDriver,
    allocated,
    allocated_bytes,
    files_in,
    pattern,
    read_at,
    write_at,
)

DATA = {0: 4_096, GIB // 2: 8_192, GIB - 4_096: 4_096}


async def source(driver: VolumeDriver, header: EncryptionHeader | None = None) -> None:
    """Volume ``v1`` (1 GiB, DATA written after its header, if any) and its snapshot ``s1``."""
    kw = {"header": header} if header is not None else {}
    await driver.create_volume("v1", 1, location=SMALL, step_key="c-v1", **kw)
    data = DATA if header is None else {k + 4 * MIB: n for k, n in DATA.items() if k < GIB // 2}
    write_at(driver.volume_path("v1", SMALL), data)
    await driver.create_snapshot("v1", "s1", SMALL, step_key="s-s1")


def holds(path: object, chunks: dict[int, int]) -> bool:
    return all(read_at(path, offset, n) == pattern(offset, n) for offset, n in chunks.items())  # type: ignore[arg-type]


async def test_from_snapshot_copies_verified_sparse_and_grows(driver: VolumeDriver) -> None:
    await source(driver)
    write_at(driver.volume_path("v1", SMALL), {100 * MIB: 4_096})  # after the snapshot
    host = await driver.create_volume_from_snapshot("v2", "s1", 3, location=SMALL, step_key="k")
    assert host == SMALL
    new = driver.volume_path("v2", SMALL)
    assert new.stat().st_size == 3 * GIB
    assert holds(new, DATA)
    assert read_at(new, 100 * MIB, 4_096) == bytes(4_096)  # the snapshot's bytes, not today's
    assert read_at(new, 2 * GIB, 4_096) == bytes(4_096)
    assert allocated_bytes(new) < 4 * MIB
    assert allocated(driver)[SMALL] == 1 + 1 + 3


async def test_a_redelivered_step_does_not_copy_again(make_driver: MakeDriver) -> None:
    driver = make_driver()
    await source(driver)
    await driver.create_volume_from_snapshot("v2", "s1", 2, location=SMALL, step_key="k")
    digest = copying.content_digest(driver.volume_path("v2", SMALL))
    inode = driver.volume_path("v2", SMALL).stat().st_ino
    await driver.create_volume_from_snapshot("v2", "s1", 2, location=SMALL, step_key="k")
    assert driver.volume_path("v2", SMALL).stat().st_ino == inode  # not replaced
    assert copying.content_digest(driver.volume_path("v2", SMALL)) == digest
    assert allocated(driver) == allocated(make_driver())  # equal to a fresh scan


async def test_a_copy_installed_before_a_crash_is_finished_not_redone(
    make_driver: MakeDriver,
) -> None:
    """A crash between the copy's rename and its growth: the restarted driver grows it."""
    driver = make_driver()
    await source(driver)
    await driver.create_volume_from_snapshot("v2", "s1", 1, location=SMALL, step_key="k")
    restarted = make_driver()
    await restarted.create_volume_from_snapshot("v2", "s1", 2, location=SMALL, step_key="k")
    new = restarted.volume_path("v2", SMALL)
    assert (new.stat().st_size, holds(new, DATA)) == (2 * GIB, True)
    assert allocated(restarted) == allocated(make_driver())


async def test_clone_copies_the_volume(driver: VolumeDriver) -> None:
    await source(driver)
    host = await driver.create_cloned_volume("v3", "v1", 1, location=SMALL, step_key="k")
    assert host == SMALL
    assert copying.content_digest(driver.volume_path("v3", SMALL)) == copying.content_digest(
        driver.volume_path("v1", SMALL)
    )


async def test_a_missing_or_larger_source_fails_and_leaves_nothing(driver: VolumeDriver) -> None:
    await source(driver)
    before = allocated(driver)
    with pytest.raises(BackendError, match="not found"):
        await driver.create_volume_from_snapshot("v2", "gone", 1, location=SMALL, step_key="k")
    with pytest.raises(BackendError, match="not found"):
        await driver.create_cloned_volume("v2", "gone", 1, location=SMALL, step_key="k")
    await driver.extend_volume("v1", SMALL, 2, step_key="e")
    with pytest.raises(BackendError, match="more than"):
        await driver.create_cloned_volume("v2", "v1", 1, location=SMALL, step_key="k")
    assert not driver.volume_path("v2", SMALL).exists()
    assert allocated(driver)[SMALL] == before[SMALL] + 1  # only the extend


async def test_no_room_in_the_source_pool_is_a_capacity_error(driver: VolumeDriver) -> None:
    await source(driver)
    with pytest.raises(CapacityError):
        await driver.create_volume_from_snapshot("v2", "s1", 9, location=SMALL, step_key="k")
    assert not driver.volume_path("v2", SMALL).exists()


async def test_a_corrupted_copy_is_refused_and_removed(driver: VolumeDriver) -> None:
    """A byte flipped on the way to the disk (the drivers' ``before_verify`` hook)."""
    await source(driver)
    before = allocated(driver)
    token = before_verify.set(copying.flip_byte)
    try:
        with pytest.raises(BackendError, match="checksum mismatch"):
            await driver.create_volume_from_snapshot("v2", "s1", 1, location=SMALL, step_key="k")
    finally:
        before_verify.reset(token)
    directory = driver.volume_path("v1", SMALL).parent
    assert files_in(directory) == ["snapshot-s1.img", "volume-v1.img"]
    assert allocated(driver) == before


async def test_an_encrypted_copy_gets_the_new_key(driver: VolumeDriver) -> None:
    old = EncryptionHeader("luks", "aes-xts-plain64", 256, "11111111-1111-1111-1111-111111111111")
    new = EncryptionHeader("luks", "aes-xts-plain64", 256, "22222222-2222-2222-2222-222222222222")
    await source(driver, old)
    await driver.create_volume_from_snapshot(
        "v2", "s1", 1, location=SMALL, step_key="k", header=new
    )
    path = driver.volume_path("v2", SMALL)
    record = encryption.header_of(path)
    assert record is not None
    assert record["key_id"] == new.key_id
    assert encryption.payload_digest(path) == encryption.payload_digest(
        driver.snapshot_path("s1", SMALL)
    )
