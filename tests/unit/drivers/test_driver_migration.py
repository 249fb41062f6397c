"""Migration compliance suite: every VolumeDriver must pass it (file driver, fault wrapper).

Copies are of real bytes: volumes get recognizable data at several offsets, separated
by holes, and every byte is checked at the destination.
"""

from __future__ import annotations

import asyncio

import pytest

from cinderblock.drivers.base import GIB, BackendError, CapacityError, VolumeDriver
from tests.unit.drivers.given import (
    LARGE,
    MIB,
    SHARED,
    SMALL,
    MakeDriver,
    allocated,
    allocated_bytes,
    files_in,
    pattern,
    read_at,
    write_at,
)

BIG_GB = 3
BIG_DATA = {  # offset: length, about 4.5 MiB in all, the rest of the 3 GiB is holes
    0: 8_192,
    12_345: 3_000,  # inside the first copy chunk, unaligned
    100 * MIB: MIB,
    GIB + 4_097: MIB,  # unaligned, far into the file
    2 * GIB + 512 * 1024: 2 * MIB,  # straddles two copy chunks
    BIG_GB * GIB - MIB // 2: MIB // 2,  # the very end
}
SMALL_DATA = {4_096: 64 * 1024, GIB // 2: MIB}


async def volume_with_data(
    driver: VolumeDriver, volume_id: str, size_gb: int, location: str, data: dict[int, int]
) -> None:
    await driver.create_volume(volume_id, size_gb, location=location, step_key=f"c-{volume_id}")
    write_at(driver.volume_path(volume_id, location), data)


def assert_holds(driver: VolumeDriver, volume_id: str, location: str, data: dict[int, int]) -> None:
    path = driver.volume_path(volume_id, location)
    for offset, length in data.items():
        assert read_at(path, offset, length) == pattern(offset, length), f"bytes at {offset}"


def no_temp_files(driver: VolumeDriver, location: str) -> bool:
    directory = driver.volume_path("x", location).parent
    return not [name for name in files_in(directory) if name.endswith(".tmp")]


# -- copying ----------------------------------------------------------------------------------


async def test_migrate_copies_every_written_byte_and_keeps_the_holes(driver: VolumeDriver) -> None:
    await volume_with_data(driver, "v1", BIG_GB, SMALL, BIG_DATA)

    location = await driver.migrate_volume("v1", SMALL, LARGE, step_key="migrate-v1")

    copy = driver.volume_path("v1", LARGE)
    assert location == LARGE
    assert copy.stat().st_size == BIG_GB * GIB
    assert_holds(driver, "v1", LARGE, BIG_DATA)
    assert read_at(copy, GIB // 2, 4096) == bytes(4096)  # a hole reads as zeros
    assert read_at(copy, BIG_GB * GIB - MIB, 4096) == bytes(4096)
    assert allocated_bytes(copy) < 16 * MIB  # ~4.5 MiB of data: the holes stayed holes
    assert driver.volume_path("v1", SMALL).exists()  # migrate never removes the source
    assert allocated(driver) == {SMALL: BIG_GB, LARGE: BIG_GB, SHARED: 0}
    assert no_temp_files(driver, LARGE)


async def test_migrate_to_a_backend_picks_its_pool_with_most_free_space(
    driver: VolumeDriver,
) -> None:
    await volume_with_data(driver, "v1", 1, SHARED, SMALL_DATA)
    await volume_with_data(driver, "v2", 1, SHARED, SMALL_DATA)
    await driver.create_volume("filler", 12, location=LARGE, step_key="c-filler")

    first = await driver.migrate_volume("v1", SHARED, "node1@file-a", step_key="m1")
    await driver.delete_volume("filler", LARGE, step_key="d-filler")
    second = await driver.migrate_volume("v2", SHARED, "node1@file-a", step_key="m2")

    assert (first, second) == (SMALL, LARGE)  # 10 free vs 8; then 9 free vs 20
    assert_holds(driver, "v1", SMALL, SMALL_DATA)
    assert_holds(driver, "v2", LARGE, SMALL_DATA)
    assert allocated(driver) == {SMALL: 1, LARGE: 1, SHARED: 2}


async def test_migrate_to_its_own_backend_picks_another_pool(driver: VolumeDriver) -> None:
    await volume_with_data(driver, "v1", 1, SMALL, SMALL_DATA)
    await driver.create_volume("filler", 12, location=LARGE, step_key="c-filler")

    location = await driver.migrate_volume("v1", SMALL, "node1@file-a", step_key="m")

    assert location == LARGE  # SMALL has more room, but the volume is already there
    assert_holds(driver, "v1", LARGE, SMALL_DATA)


# -- idempotency ------------------------------------------------------------------------------


async def test_migrate_again_keeps_the_verified_copy(driver: VolumeDriver) -> None:
    await volume_with_data(driver, "v1", 1, SHARED, SMALL_DATA)
    first = await driver.migrate_volume("v1", SHARED, "node1@file-a", step_key="m")
    inode = driver.volume_path("v1", first).stat().st_ino
    await driver.create_volume("filler", 12, location=LARGE, step_key="c-filler")

    again = await driver.migrate_volume("v1", SHARED, "node1@file-a", step_key="m")

    assert again == first == LARGE  # not SMALL, though SMALL has more room by now
    assert driver.volume_path("v1", LARGE).stat().st_ino == inode  # not copied again
    source_sum, copy_sum = await asyncio.gather(
        driver.checksum("v1", SHARED), driver.checksum("v1", LARGE)
    )
    assert source_sum == copy_sum
    assert allocated(driver) == {SMALL: 0, LARGE: 13, SHARED: 1}


@pytest.mark.parametrize("stale_gb", [1, 2])
async def test_migrate_replaces_a_copy_that_differs(driver: VolumeDriver, stale_gb: int) -> None:
    await volume_with_data(driver, "v1", 1, SMALL, SMALL_DATA)
    await driver.create_volume("v1", stale_gb, location=LARGE, step_key="stale")
    write_at(driver.volume_path("v1", LARGE), {0: 2 * MIB})  # junk the source does not hold
    inode = driver.volume_path("v1", LARGE).stat().st_ino

    location = await driver.migrate_volume("v1", SMALL, LARGE, step_key="m")

    copy = driver.volume_path("v1", LARGE)
    assert location == LARGE
    assert copy.stat().st_ino != inode
    assert copy.stat().st_size == GIB
    assert_holds(driver, "v1", LARGE, SMALL_DATA)
    assert read_at(copy, 0, 4096) == bytes(4096)
    assert allocated(driver) == {SMALL: 1, LARGE: 1, SHARED: 0}
    assert no_temp_files(driver, LARGE)


# -- refusals ---------------------------------------------------------------------------------


async def test_migrate_into_a_pool_without_room_raises_capacity_error(
    driver: VolumeDriver,
) -> None:
    await volume_with_data(driver, "v1", 2, SMALL, SMALL_DATA)
    await driver.create_volume("filler", 4, location=SHARED, step_key="c-filler")

    with pytest.raises(CapacityError, match=SHARED) as caught:
        await driver.migrate_volume("v1", SMALL, SHARED, step_key="m")

    assert (caught.value.operation, caught.value.volume_id) == ("migrate", "v1")
    assert not driver.volume_path("v1", SHARED).exists()
    assert no_temp_files(driver, SHARED)
    assert allocated(driver) == {SMALL: 2, LARGE: 0, SHARED: 4}


async def test_migrate_to_a_backend_without_room_raises_capacity_error(
    driver: VolumeDriver,
) -> None:
    await volume_with_data(driver, "v1", 2, SMALL, SMALL_DATA)
    await driver.create_volume("filler", 4, location=SHARED, step_key="c-filler")

    with pytest.raises(CapacityError, match="no pool of node2@file-b has 2 GiB free"):
        await driver.migrate_volume("v1", SMALL, "node2@file-b", step_key="m")

    assert allocated(driver) == {SMALL: 2, LARGE: 0, SHARED: 4}


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ("node9@file-z#pool0", "unknown pool"),
        ("node1@file-a#nope", "unknown pool"),
        ("node9@file-z", "unknown backend"),
        ("node1", "unknown backend"),
        (SMALL, "same pool"),
    ],
)
async def test_migrate_to_an_unknown_or_the_same_pool_is_a_backend_error(
    driver: VolumeDriver, destination: str, message: str
) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")

    with pytest.raises(BackendError, match=message) as caught:
        await driver.migrate_volume("v1", SMALL, destination, step_key="m")

    assert caught.value.operation == "migrate"
    assert allocated(driver) == {SMALL: 1, LARGE: 0, SHARED: 0}


async def test_migrate_to_a_backend_whose_only_pool_is_the_source_is_refused(
    driver: VolumeDriver,
) -> None:
    await driver.create_volume("v1", 1, location=SHARED, step_key="c")

    with pytest.raises(BackendError, match="same pool"):
        await driver.migrate_volume("v1", SHARED, "node2@file-b", step_key="m")


async def test_migrate_of_a_missing_volume_is_a_backend_error(driver: VolumeDriver) -> None:
    with pytest.raises(BackendError, match="not found"):
        await driver.migrate_volume("ghost", SMALL, LARGE, step_key="m")

    assert not driver.volume_path("ghost", LARGE).exists()
    assert allocated(driver) == {SMALL: 0, LARGE: 0, SHARED: 0}


async def test_migrate_from_an_unknown_pool_is_a_backend_error(driver: VolumeDriver) -> None:
    with pytest.raises(BackendError, match="unknown pool"):
        await driver.migrate_volume("v1", "node9@file-z#pool0", LARGE, step_key="m")


async def test_migrate_rejects_unsafe_volume_ids(driver: VolumeDriver) -> None:
    with pytest.raises(ValueError, match="safe file name"):
        await driver.migrate_volume("../v1", SMALL, LARGE, step_key="m")


async def test_checksum_of_a_missing_volume_is_a_backend_error(driver: VolumeDriver) -> None:
    with pytest.raises(BackendError, match="not found") as caught:
        await driver.checksum("ghost", SMALL)

    assert caught.value.operation == "checksum"
    with pytest.raises(BackendError, match="unknown pool"):
        await driver.checksum("ghost", "node9@file-z#pool0")


# -- concurrency and accounting ---------------------------------------------------------------


async def test_concurrent_migrations_into_a_nearly_full_pool_never_overcommit(
    driver: VolumeDriver,
) -> None:
    await driver.create_volume("filler", 2, location=SHARED, step_key="c-filler")
    for i in range(5):
        await volume_with_data(driver, f"v{i}", 1, SMALL, {i * MIB: MIB})

    results = await asyncio.gather(
        *(driver.migrate_volume(f"v{i}", SMALL, SHARED, step_key=f"m{i}") for i in range(5)),
        return_exceptions=True,
    )

    moved = [i for i, result in enumerate(results) if result == SHARED]
    assert len(moved) == 3
    assert all(isinstance(r, CapacityError) for r in results if r != SHARED)
    for i in moved:
        assert_holds(driver, f"v{i}", SHARED, {i * MIB: MIB})
    shared = driver.volume_path("filler", SHARED).parent
    assert sum(p.stat().st_size for p in shared.iterdir()) == 5 * GIB
    assert no_temp_files(driver, SHARED)
    assert allocated(driver) == {SMALL: 5, LARGE: 0, SHARED: 5}


async def test_deleting_the_source_after_migrate_keeps_the_copy_and_the_books(
    make_driver: MakeDriver,
) -> None:
    driver = make_driver()
    await volume_with_data(driver, "v1", 2, SMALL, SMALL_DATA)
    await driver.create_volume("other", 1, location=SMALL, step_key="c-other")
    location = await driver.migrate_volume("v1", SMALL, LARGE, step_key="m")

    await driver.delete_volume("v1", SMALL, step_key="d-old")
    await driver.delete_volume("v1", SMALL, step_key="d-old")  # redelivered

    assert location == LARGE
    assert not driver.volume_path("v1", SMALL).exists()
    assert_holds(driver, "v1", LARGE, SMALL_DATA)
    assert allocated(driver) == {SMALL: 1, LARGE: 2, SHARED: 0}
    restarted = make_driver()
    assert restarted.pools() == driver.pools()
    await restarted.delete_volume("v1", LARGE, step_key="d-new")
    assert allocated(restarted) == {SMALL: 1, LARGE: 0, SHARED: 0}
