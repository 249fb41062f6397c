"""Snapshot compliance suite (file driver, fault wrapper) and snapshot fault modes.

Volumes are 1 GiB sparse files holding a few KiB at several offsets; every snapshot or
revert hashes whole images (about 0.6 s per GiB), so each test makes few of them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cinderblock.drivers import copying, imagefiles
from cinderblock.drivers.base import (
    GIB,
    BackendError,
    CapacityError,
    PoolConfig,
    VolumeDriver,
)
from cinderblock.drivers.faults import DriverCall, Fault, FaultInjectingDriver, FaultPlan
from cinderblock.drivers.file import FileDriver
from tests.unit.drivers.given import (
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

DATA = {0: 4_096, 12_345: 3_000, GIB // 2: 8_192, GIB - 4_096: 4_096}  # about 19 KiB
LATER = 300 * MIB  # a hole when the snapshot is taken; written afterwards
SCRIBBLE = b"\xaa" * 4_096


async def volume_with_snapshot(
    driver: VolumeDriver, volume_id: str = "v1", snapshot_id: str = "s1", location: str = SMALL
) -> None:
    """A 1 GiB volume holding DATA, and a snapshot of it."""
    await driver.create_volume(volume_id, 1, location=location, step_key=f"c-{volume_id}")
    write_at(driver.volume_path(volume_id, location), DATA)
    await driver.create_snapshot(volume_id, snapshot_id, location, step_key=f"s-{snapshot_id}")


def change(path: Path) -> None:
    """Overwrite the first bytes and write into a hole, without extending."""
    with path.open("r+b") as image:
        image.write(SCRIBBLE)
        image.seek(LATER)
        image.write(pattern(LATER, 8_192))


def holds_data(path: Path) -> bool:
    return all(read_at(path, offset, n) == pattern(offset, n) for offset, n in DATA.items())


def holds_change(path: Path) -> bool:
    return read_at(path, 0, 4_096) == SCRIBBLE and read_at(path, LATER, 8_192) == pattern(
        LATER, 8_192
    )


def temp_files(directory: Path) -> list[str]:
    return [name for name in files_in(directory) if name.endswith(".tmp")]


async def digests(*paths: Path) -> list[str]:
    """Whole-image content digests, computed in parallel threads."""
    return list(
        await asyncio.gather(*(asyncio.to_thread(copying.content_digest, p) for p in paths))
    )


# -- snapshot and revert ----------------------------------------------------------------------


async def test_snapshot_is_a_sparse_copy_next_to_the_volume(driver: VolumeDriver) -> None:
    await volume_with_snapshot(driver)
    snapshot = driver.snapshot_path("s1", SMALL)

    assert snapshot == driver.volume_path("v1", SMALL).with_name("snapshot-s1.img")
    assert files_in(snapshot.parent) == ["snapshot-s1.img", "volume-v1.img"]
    assert snapshot.stat().st_size == GIB
    assert holds_data(snapshot)
    assert read_at(snapshot, LATER, 4_096) == bytes(4_096)
    assert allocated_bytes(snapshot) < MIB  # holes stayed holes


async def test_revert_brings_back_the_snapshot_and_drops_later_writes(
    driver: VolumeDriver,
) -> None:
    await volume_with_snapshot(driver)
    volume, snapshot = driver.volume_path("v1", SMALL), driver.snapshot_path("s1", SMALL)
    change(volume)
    assert read_at(snapshot, 0, 4_096) == pattern(0, 4_096)  # a copy, not a view

    await driver.revert_to_snapshot("v1", "s1", SMALL, step_key="r1")

    assert holds_data(volume)
    assert read_at(volume, LATER, 8_192) == bytes(8_192)
    assert volume.stat().st_size == GIB
    assert allocated_bytes(volume) < MIB  # the snapshot's holes, not the later data
    ours, theirs = await digests(volume, snapshot)
    assert ours == theirs
    assert files_in(volume.parent) == ["snapshot-s1.img", "volume-v1.img"]  # snapshot stays
    assert allocated(driver)[SMALL] == 2
    reverted = volume.stat().st_ino
    await driver.revert_to_snapshot("v1", "s1", SMALL, step_key="r1")  # redelivered
    assert volume.stat().st_ino == reverted  # nothing was copied


# -- capacity ---------------------------------------------------------------------------------


async def test_snapshots_count_until_deleted_and_after_a_restart(
    make_driver: MakeDriver,
) -> None:
    driver = make_driver()
    await volume_with_snapshot(driver)
    assert allocated(driver) == {SMALL: 2, "node1@file-a#pool1": 0, SHARED: 0}

    assert allocated(make_driver())[SMALL] == 2  # the restart scan counts the snapshot

    await driver.delete_snapshot("s1", SMALL, step_key="d1")
    assert allocated(driver)[SMALL] == 1
    assert not driver.snapshot_path("s1", SMALL).exists()
    assert allocated(make_driver())[SMALL] == 1


async def test_a_snapshot_needs_room_in_the_volumes_pool(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 3, location=SHARED, step_key="c1")  # 3 of 5 GiB

    with pytest.raises(CapacityError) as caught:
        await driver.create_snapshot("v1", "s1", SHARED, step_key="s1")

    assert (caught.value.operation, caught.value.volume_id) == ("snapshot", "v1")
    assert files_in(driver.volume_path("v1", SHARED).parent) == ["volume-v1.img"]
    assert allocated(driver)[SHARED] == 3


async def test_a_revert_needs_room_for_its_copy(driver: VolumeDriver) -> None:
    await volume_with_snapshot(driver, location=SHARED)
    change(driver.volume_path("v1", SHARED))
    await driver.create_volume("filler", 3, location=SHARED, step_key="c2")  # 5 of 5 GiB

    with pytest.raises(CapacityError) as caught:
        await driver.revert_to_snapshot("v1", "s1", SHARED, step_key="r1")

    assert caught.value.operation == "revert"
    assert holds_change(driver.volume_path("v1", SHARED))
    assert temp_files(driver.volume_path("v1", SHARED).parent) == []
    assert allocated(driver)[SHARED] == 5


# -- idempotency ------------------------------------------------------------------------------


async def test_snapshot_and_delete_repeated_are_harmless(driver: VolumeDriver) -> None:
    await volume_with_snapshot(driver)
    volume, snapshot = driver.volume_path("v1", SMALL), driver.snapshot_path("s1", SMALL)
    taken = snapshot.stat().st_ino
    change(volume)

    await driver.create_snapshot("v1", "s1", SMALL, step_key="s-s1")  # redelivered
    assert snapshot.stat().st_ino == taken
    assert holds_data(snapshot)  # still the point in time of the first call

    await driver.delete_snapshot("s1", SMALL, step_key="d1")
    await driver.delete_snapshot("s1", SMALL, step_key="d1")  # already gone
    assert files_in(volume.parent) == ["volume-v1.img"]
    assert allocated(driver)[SMALL] == 1


async def test_a_snapshot_id_taken_with_another_size_is_an_error(driver: VolumeDriver) -> None:
    await volume_with_snapshot(driver)
    await driver.extend_volume("v1", SMALL, 2, step_key="e1")

    with pytest.raises(BackendError, match="exists with"):
        await driver.create_snapshot("v1", "s1", SMALL, step_key="s-s1")

    assert driver.snapshot_path("s1", SMALL).stat().st_size == GIB
    assert allocated(driver)[SMALL] == 3


# -- errors -----------------------------------------------------------------------------------


async def test_revert_refuses_a_snapshot_of_another_size(driver: VolumeDriver) -> None:
    await volume_with_snapshot(driver)
    await driver.extend_volume("v1", SMALL, 2, step_key="e1")
    change(driver.volume_path("v1", SMALL))

    with pytest.raises(BackendError, match="volume has") as caught:
        await driver.revert_to_snapshot("v1", "s1", SMALL, step_key="r1")

    assert (caught.value.operation, caught.value.volume_id) == ("revert", "v1")
    assert driver.volume_path("v1", SMALL).stat().st_size == 2 * GIB
    assert holds_change(driver.volume_path("v1", SMALL))


async def test_missing_files_and_pools_are_backend_errors(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="c1")

    with pytest.raises(BackendError, match=r"snapshot file .* not found"):
        await driver.revert_to_snapshot("v1", "nope", SMALL, step_key="r1")
    with pytest.raises(BackendError, match=r"volume file .* not found"):
        await driver.create_snapshot("ghost", "s1", SMALL, step_key="s1")
    with pytest.raises(BackendError, match="unknown pool"):
        await driver.create_snapshot("v1", "s1", "node9@x#y", step_key="s1")
    with pytest.raises(BackendError, match="unknown pool") as caught:
        await driver.delete_snapshot("s1", "node9@x#y", step_key="d1")
    assert (caught.value.operation, caught.value.volume_id) == ("delete_snapshot", "s1")
    with pytest.raises(ValueError, match="snapshot id"):
        await driver.create_snapshot("v1", "../s1", SMALL, step_key="s1")
    with pytest.raises(ValueError, match="snapshot id"):
        driver.snapshot_path("", SMALL)
    assert files_in(driver.volume_path("v1", SMALL).parent) == ["volume-v1.img"]
    assert allocated(driver)[SMALL] == 1


async def test_revert_of_a_missing_volume_is_a_backend_error(driver: VolumeDriver) -> None:
    await volume_with_snapshot(driver)
    await driver.delete_volume("v1", SMALL, step_key="d1")

    with pytest.raises(BackendError, match=r"volume file .* not found"):
        await driver.revert_to_snapshot("v1", "s1", SMALL, step_key="r1")

    assert files_in(driver.snapshot_path("s1", SMALL).parent) == ["snapshot-s1.img"]


# -- concurrency ------------------------------------------------------------------------------


async def test_snapshot_and_revert_of_one_volume_take_turns(driver: VolumeDriver) -> None:
    await volume_with_snapshot(driver)
    volume = driver.volume_path("v1", SMALL)
    change(volume)

    results = await asyncio.gather(
        driver.revert_to_snapshot("v1", "s1", SMALL, step_key="r1"),
        driver.create_snapshot("v1", "s2", SMALL, step_key="s2"),
        return_exceptions=True,
    )

    assert results == [None, None]
    # the revert came first and held the volume until it was done: the snapshot copied
    # the reverted image, not the changed one it would have found at once
    for path in (volume, driver.snapshot_path("s2", SMALL)):
        assert holds_data(path)
        assert read_at(path, LATER, 8_192) == bytes(8_192)
    assert allocated(driver)[SMALL] == 3
    assert temp_files(volume.parent) == []


async def test_a_snapshot_being_reverted_to_is_deleted_afterwards(driver: VolumeDriver) -> None:
    await volume_with_snapshot(driver)
    change(driver.volume_path("v1", SMALL))

    await asyncio.gather(
        driver.revert_to_snapshot("v1", "s1", SMALL, step_key="r1"),
        driver.delete_snapshot("s1", SMALL, step_key="d1"),
    )

    assert holds_data(driver.volume_path("v1", SMALL))
    assert files_in(driver.volume_path("v1", SMALL).parent) == ["volume-v1.img"]
    assert allocated(driver)[SMALL] == 1


# -- file driver specifics --------------------------------------------------------------------


async def test_start_counts_snapshots_and_drops_their_leftover_copies(tmp_path: Path) -> None:
    pools = [PoolConfig.parse(f"{SMALL}:10")]
    driver = FileDriver(tmp_path, pools)
    await volume_with_snapshot(driver)
    leftover = imagefiles.temp_path(driver.snapshot_path("s2", SMALL))
    leftover.write_bytes(b"half a snapshot")

    restarted = FileDriver(tmp_path, pools)

    assert not leftover.exists()
    assert restarted.pools()[0].allocated_gb == 2
    await restarted.create_volume("s1", 1, location=SMALL, step_key="c2")  # not a volume
    assert restarted.pools()[0].allocated_gb == 3


async def test_a_failed_snapshot_copy_releases_its_room_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = FileDriver(tmp_path, [PoolConfig.parse(f"{SMALL}:10")])
    await driver.create_volume("v1", 1, location=SMALL, step_key="c1")

    def disk_full(_source: Path, target: Path) -> int:
        target.write_bytes(b"half a copy")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(copying, "copy_sparse", disk_full)
        with pytest.raises(BackendError, match="No space left") as caught:
            await driver.create_snapshot("v1", "s1", SMALL, step_key="s1")

    assert caught.value.operation == "snapshot"
    assert files_in(driver.volume_path("v1", SMALL).parent) == ["volume-v1.img"]
    assert driver.pools()[0].allocated_gb == 1


# -- fault injection --------------------------------------------------------------------------


async def wrapped(tmp_path: Path, spec: str) -> FaultInjectingDriver:
    """A wrapped driver holding volume v1 and its snapshot s1, then given the plan."""
    driver = FaultInjectingDriver(FileDriver(tmp_path, [PoolConfig.parse(f"{SMALL}:10")]))
    await volume_with_snapshot(driver)
    driver.plan = FaultPlan.parse(spec)
    return driver


def test_snapshot_steps_take_every_mode() -> None:
    plan = FaultPlan.parse("revert=corrupt:1, delete_snapshot=fail:2, snapshot=delay:0.5")

    assert plan.fault_for("snapshot") == Fault("delay", seconds=0.5)
    assert plan.fault_for("delete_snapshot") == Fault("fail", times=2)
    assert plan.fault_for("revert") == Fault("corrupt", times=1)
    assert str(plan) == "snapshot=delay:0.5,delete_snapshot=fail:2,revert=corrupt:1"
    assert FaultPlan.parse("snapshot=corrupt").fault_for("snapshot") == Fault("corrupt")
    with pytest.raises(ValueError, match="corrupt applies to"):
        FaultPlan.parse("delete_snapshot=corrupt")


async def test_snapshot_faults_fail_and_record(tmp_path: Path) -> None:
    driver = await wrapped(tmp_path, "snapshot=fail,delete_snapshot=fail:1,revert=capacity")

    with pytest.raises(BackendError, match="injected failure"):
        await driver.create_snapshot("v1", "s2", SMALL, step_key="s2")
    with pytest.raises(CapacityError):
        await driver.revert_to_snapshot("v1", "s1", SMALL, step_key="r1")
    with pytest.raises(BackendError, match="injected failure"):
        await driver.delete_snapshot("s1", SMALL, step_key="d1")
    await driver.delete_snapshot("s1", SMALL, step_key="d1")

    assert driver.calls[-4:] == [
        DriverCall("snapshot", "v1", "s2"),
        DriverCall("revert", "v1", "r1"),
        DriverCall("delete_snapshot", "s1", "d1"),
        DriverCall("delete_snapshot", "s1", "d1"),
    ]
    assert driver.injected == driver.calls[-4:-1]
    assert files_in(driver.volume_path("v1", SMALL).parent) == ["volume-v1.img"]


async def test_corrupt_revert_is_caught_and_leaves_the_volume_untouched(tmp_path: Path) -> None:
    driver = await wrapped(tmp_path, "revert=corrupt:1")
    volume = driver.volume_path("v1", SMALL)
    change(volume)
    before = volume.stat()

    with pytest.raises(BackendError, match="checksum mismatch") as caught:
        await driver.revert_to_snapshot("v1", "s1", SMALL, step_key="r1")

    assert caught.value.operation == "revert"
    after = volume.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert holds_change(volume)
    assert files_in(volume.parent) == ["snapshot-s1.img", "volume-v1.img"]
    assert driver.pools()[0].allocated_gb == 2
    assert driver.injected == [DriverCall("revert", "v1", "r1")]
    await driver.revert_to_snapshot("v1", "s1", SMALL, step_key="r1")  # the retry goes through
    assert holds_data(volume)


async def test_corrupt_snapshot_is_caught_and_leaves_no_file(tmp_path: Path) -> None:
    driver = await wrapped(tmp_path, "snapshot=corrupt")

    with pytest.raises(BackendError, match="checksum mismatch") as caught:
        await driver.create_snapshot("v1", "s2", SMALL, step_key="s2")

    assert caught.value.operation == "snapshot"
    assert files_in(driver.volume_path("v1", SMALL).parent) == ["snapshot-s1.img", "volume-v1.img"]
    assert driver.pools()[0].allocated_gb == 2
    assert driver.injected == [DriverCall("snapshot", "v1", "s2")]
    assert holds_data(driver.volume_path("v1", SMALL))
