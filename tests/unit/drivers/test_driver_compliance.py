"""Driver compliance suite: every VolumeDriver must pass it (file driver, fault wrapper)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from cinderblock.drivers.base import (
    GIB,
    BackendError,
    CapacityError,
    PoolStats,
    VolumeDriver,
)
from tests.unit.drivers.given import LARGE, SHARED, SMALL, MakeDriver, allocated, stats

# -- pools ------------------------------------------------------------------------------------


def test_is_a_volume_driver(driver: VolumeDriver) -> None:
    assert isinstance(driver, VolumeDriver)


def test_pools_start_empty_in_configuration_order(driver: VolumeDriver) -> None:
    assert driver.pools() == [
        PoolStats(SMALL, capacity_gb=10, allocated_gb=0, free_gb=10, multiattach=False),
        PoolStats(LARGE, capacity_gb=20, allocated_gb=0, free_gb=20, multiattach=False),
        PoolStats(SHARED, capacity_gb=5, allocated_gb=0, free_gb=5, multiattach=True),
    ]


def test_volume_path_follows_the_layout(driver: VolumeDriver, tmp_path: Path) -> None:
    path = driver.volume_path("v1", SMALL)

    assert path == tmp_path / "backend" / "node1@file-a" / "pool0" / "volume-v1.img"


def test_volume_path_of_unknown_pool_is_a_backend_error(driver: VolumeDriver) -> None:
    with pytest.raises(BackendError, match="unknown pool"):
        driver.volume_path("v1", "node9@file-z#pool0")


@pytest.mark.parametrize("volume_id", ["../escape", "a/b", "", ".hidden", "x" * 300])
async def test_unsafe_volume_ids_are_rejected(driver: VolumeDriver, volume_id: str) -> None:
    with pytest.raises(ValueError, match="safe file name"):
        await driver.create_volume(volume_id, 1, location=SMALL, step_key="k")


@pytest.mark.parametrize("size_gb", [0, -1])
async def test_sizes_below_one_gib_are_rejected(driver: VolumeDriver, size_gb: int) -> None:
    with pytest.raises(ValueError, match="positive whole number"):
        await driver.create_volume("v1", size_gb, location=SMALL, step_key="k")


# -- create -----------------------------------------------------------------------------------


async def test_create_makes_a_sparse_file_of_the_exact_size(driver: VolumeDriver) -> None:
    location = await driver.create_volume("v1", 3, location=SMALL, step_key="create-v1")

    info = driver.volume_path("v1", location).stat()
    assert location == SMALL
    assert info.st_size == 3 * GIB
    assert info.st_blocks * 512 < 64 * 1024  # nothing written: (almost) no blocks allocated
    assert stats(driver)[SMALL].allocated_gb == 3
    assert stats(driver)[SMALL].free_gb == 7


async def test_create_without_location_picks_the_pool_with_most_free_space(
    driver: VolumeDriver,
) -> None:
    first = await driver.create_volume("v1", 12, location=None, step_key="k1")
    second = await driver.create_volume("v2", 3, location=None, step_key="k2")
    third = await driver.create_volume("v3", 8, location=None, step_key="k3")

    assert (first, second, third) == (LARGE, SMALL, LARGE)  # free 20 -> 8 vs 10; then 7 vs 8
    assert allocated(driver) == {SMALL: 3, LARGE: 20, SHARED: 0}


async def test_create_without_location_skips_pools_that_do_not_fit(driver: VolumeDriver) -> None:
    await driver.create_volume("big", 15, location=LARGE, step_key="k1")

    location = await driver.create_volume("v1", 6, location=None, step_key="k2")

    assert location == SMALL  # 10 free; LARGE has 5, SHARED 5


async def test_create_again_with_the_same_step_key_returns_the_same_location(
    driver: VolumeDriver,
) -> None:
    first = await driver.create_volume("v1", 2, location=None, step_key="create-v1")
    await driver.create_volume("v2", 15, location=LARGE, step_key="create-v2")

    again = await driver.create_volume("v1", 2, location=None, step_key="create-v1")

    assert again == first == LARGE
    assert allocated(driver) == {SMALL: 0, LARGE: 17, SHARED: 0}
    assert sorted(p.name for p in driver.volume_path("v1", LARGE).parent.iterdir()) == [
        "volume-v1.img",
        "volume-v2.img",
    ]


async def test_create_of_an_existing_volume_with_another_size_fails(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 2, location=SMALL, step_key="k1")

    with pytest.raises(BackendError, match="exists") as caught:
        await driver.create_volume("v1", 3, location=SMALL, step_key="k2")

    assert (caught.value.operation, caught.value.volume_id) == ("create", "v1")
    assert driver.volume_path("v1", SMALL).stat().st_size == 2 * GIB


async def test_create_raises_capacity_error_when_no_pool_fits(driver: VolumeDriver) -> None:
    with pytest.raises(CapacityError) as caught:
        await driver.create_volume("v1", 21, location=None, step_key="k1")

    assert (caught.value.operation, caught.value.volume_id) == ("create", "v1")
    assert "20 GiB" in caught.value.reason
    assert not driver.volume_path("v1", LARGE).exists()
    assert allocated(driver) == {SMALL: 0, LARGE: 0, SHARED: 0}


async def test_create_in_a_named_pool_without_room_raises_capacity_error(
    driver: VolumeDriver,
) -> None:
    await driver.create_volume("v1", 4, location=SHARED, step_key="k1")

    with pytest.raises(CapacityError, match=SHARED):
        await driver.create_volume("v2", 2, location=SHARED, step_key="k2")

    assert await driver.create_volume("v3", 1, location=SHARED, step_key="k3") == SHARED


async def test_create_in_an_unknown_pool_is_a_backend_error(driver: VolumeDriver) -> None:
    with pytest.raises(BackendError, match="unknown pool"):
        await driver.create_volume("v1", 1, location="node1@file-a#nope", step_key="k1")


# -- extend -----------------------------------------------------------------------------------


async def test_extend_grows_the_file_and_keeps_its_data(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="create")
    path = driver.volume_path("v1", SMALL)
    with path.open("r+b") as image:
        image.write(b"cinderblock")

    await driver.extend_volume("v1", SMALL, 4, step_key="extend")

    info = path.stat()
    assert info.st_size == 4 * GIB
    assert info.st_blocks * 512 < 1024 * 1024  # still sparse
    with path.open("rb") as image:
        assert image.read(11) == b"cinderblock"
    assert stats(driver)[SMALL].allocated_gb == 4


async def test_extend_to_the_size_the_file_has_is_a_no_op(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="create")
    await driver.extend_volume("v1", SMALL, 5, step_key="extend-5")

    await driver.extend_volume("v1", SMALL, 5, step_key="extend-5")

    assert driver.volume_path("v1", SMALL).stat().st_size == 5 * GIB
    assert stats(driver)[SMALL].allocated_gb == 5


async def test_extend_up_to_the_whole_pool_succeeds(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 4, location=SMALL, step_key="create")

    await driver.extend_volume("v1", SMALL, 10, step_key="extend")

    assert stats(driver)[SMALL].free_gb == 0


async def test_extend_beyond_the_pool_raises_capacity_error(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 4, location=SMALL, step_key="create-v1")
    await driver.create_volume("v2", 3, location=SMALL, step_key="create-v2")

    with pytest.raises(CapacityError) as caught:
        await driver.extend_volume("v1", SMALL, 8, step_key="extend")

    assert (caught.value.operation, caught.value.volume_id) == ("extend", "v1")
    assert driver.volume_path("v1", SMALL).stat().st_size == 4 * GIB
    assert stats(driver)[SMALL].allocated_gb == 7


async def test_extend_never_shrinks(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 3, location=SMALL, step_key="create")

    with pytest.raises(BackendError, match="shrink"):
        await driver.extend_volume("v1", SMALL, 2, step_key="extend")

    assert driver.volume_path("v1", SMALL).stat().st_size == 3 * GIB


async def test_extend_of_a_missing_volume_is_a_backend_error(driver: VolumeDriver) -> None:
    with pytest.raises(BackendError, match="not found"):
        await driver.extend_volume("v1", SMALL, 2, step_key="extend")

    assert not driver.volume_path("v1", SMALL).exists()


# -- delete -----------------------------------------------------------------------------------


async def test_delete_removes_the_file_and_frees_the_space(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 3, location=SMALL, step_key="create")

    await driver.delete_volume("v1", SMALL, step_key="delete")

    assert not driver.volume_path("v1", SMALL).exists()
    assert stats(driver)[SMALL].free_gb == 10


async def test_delete_again_with_the_same_step_key_succeeds(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 3, location=SMALL, step_key="create-v1")
    await driver.create_volume("v2", 2, location=SMALL, step_key="create-v2")
    await driver.delete_volume("v1", SMALL, step_key="delete-v1")

    await driver.delete_volume("v1", SMALL, step_key="delete-v1")

    assert stats(driver)[SMALL].allocated_gb == 2


async def test_delete_of_a_volume_that_never_existed_succeeds(driver: VolumeDriver) -> None:
    await driver.delete_volume("ghost", LARGE, step_key="delete")

    assert allocated(driver) == {SMALL: 0, LARGE: 0, SHARED: 0}


# -- concurrency ------------------------------------------------------------------------------


async def test_concurrent_creates_in_one_pool_never_overcommit(driver: VolumeDriver) -> None:
    results = await asyncio.gather(
        *(driver.create_volume(f"v{i}", 3, location=SMALL, step_key=f"k{i}") for i in range(10)),
        return_exceptions=True,
    )

    created = [r for r in results if isinstance(r, str)]
    assert len(created) == 3
    assert all(isinstance(r, CapacityError) for r in results if not isinstance(r, str))
    on_disk = sum(p.stat().st_size for p in driver.volume_path("v0", SMALL).parent.iterdir())
    assert on_disk == 9 * GIB
    assert stats(driver)[SMALL].allocated_gb == 9


async def test_concurrent_placed_creates_never_overcommit_any_pool(driver: VolumeDriver) -> None:
    results = await asyncio.gather(
        *(driver.create_volume(f"v{i}", 4, location=None, step_key=f"k{i}") for i in range(12)),
        return_exceptions=True,
    )

    created = [r for r in results if isinstance(r, str)]
    assert sorted(created) == [SMALL] * 2 + [LARGE] * 5 + [SHARED]
    assert all(
        pool.free_gb >= 0 and pool.allocated_gb <= pool.capacity_gb for pool in driver.pools()
    )
    assert allocated(driver) == {SMALL: 8, LARGE: 20, SHARED: 4}


async def test_concurrent_redelivered_creates_make_one_volume(driver: VolumeDriver) -> None:
    results = await asyncio.gather(
        *(driver.create_volume("v1", 2, location=None, step_key="create-v1") for _ in range(5))
    )

    assert set(results) == {LARGE}
    assert allocated(driver) == {SMALL: 0, LARGE: 2, SHARED: 0}


async def test_concurrent_extends_never_overcommit(driver: VolumeDriver) -> None:
    for i in range(3):
        await driver.create_volume(f"v{i}", 1, location=SMALL, step_key=f"create-{i}")

    results = await asyncio.gather(
        *(driver.extend_volume(f"v{i}", SMALL, 4, step_key=f"extend-{i}") for i in range(3)),
        return_exceptions=True,
    )

    assert sum(isinstance(r, CapacityError) for r in results) == 1
    assert stats(driver)[SMALL].allocated_gb == 9


# -- restart ----------------------------------------------------------------------------------


async def test_a_new_driver_rebuilds_allocation_from_the_files(make_driver: MakeDriver) -> None:
    before = make_driver()
    await before.create_volume("v1", 3, location=SMALL, step_key="k1")
    await before.create_volume("v2", 5, location=None, step_key="k2")
    await before.create_volume("v3", 2, location=SHARED, step_key="k3")
    await before.extend_volume("v1", SMALL, 6, step_key="k4")
    await before.delete_volume("v3", SHARED, step_key="k5")

    after = make_driver()

    assert after.pools() == before.pools()
    assert allocated(after) == {SMALL: 6, LARGE: 5, SHARED: 0}
    assert await after.create_volume("v2", 5, location=None, step_key="k2") == LARGE
    with pytest.raises(CapacityError):
        await after.create_volume("v4", 5, location=SMALL, step_key="k6")


async def test_a_partial_gib_on_disk_counts_as_used(make_driver: MakeDriver) -> None:
    before = make_driver()
    await before.create_volume("v1", 1, location=SMALL, step_key="k1")
    os.truncate(before.volume_path("v1", SMALL), GIB + 1)  # someone wrote past the end

    after = make_driver()

    assert stats(after)[SMALL] == PoolStats(SMALL, 10, allocated_gb=2, free_gb=8, multiattach=False)
