"""PoolConfig parsing, driver errors, and FileDriver behaviour beyond the compliance suite."""

from __future__ import annotations

import asyncio
import errno
import pickle
import threading
from pathlib import Path

import pytest

from cinderblock.drivers import copying, imagefiles
from cinderblock.drivers.base import (
    GIB,
    BackendError,
    CapacityError,
    DriverError,
    PoolConfig,
    before_verify,
)
from cinderblock.drivers.file import FileDriver
from tests.unit.drivers.given import MIB, files_in, write_at

FROM = "node1@file-a#pool0"
TO = "node1@file-a#pool1"

# -- PoolConfig -------------------------------------------------------------------------------


def test_pool_spec_is_parsed() -> None:
    pool = PoolConfig.parse("node1@file-a#pool0:100")

    assert pool == PoolConfig("node1", "file-a", "pool0", 100, multiattach=False)
    assert pool.location == "node1@file-a#pool0"


def test_pool_spec_may_end_in_multiattach() -> None:
    pool = PoolConfig.parse("node1@file-b#pool0:200:multiattach")

    assert pool == PoolConfig("node1", "file-b", "pool0", 200, multiattach=True)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "node1@file-a#pool0",
        "node1@file-a#pool0:",
        "node1@file-a#pool0:lots",
        "node1@file-a#pool0:-5",
        "node1@file-a#pool0:10:readonly",
        "node1#pool0:10",
        "node1@file-a:10",
        "@file-a#pool0:10",
        "node1@#pool0:10",
        "node1@file-a#:10",
        "node1@file/a#pool0:10",
        "node1@file-a#pool0#x:10",
        "node1@file-a#pool0:multiattach",
    ],
)
def test_invalid_pool_specs_raise_value_error(spec: str) -> None:
    with pytest.raises(ValueError, match="pool"):
        PoolConfig.parse(spec)


# -- errors -----------------------------------------------------------------------------------


def test_driver_errors_carry_operation_volume_and_reason() -> None:
    error = CapacityError("extend", "v1", "pool is full")

    assert isinstance(error, DriverError)
    assert (error.operation, error.volume_id, error.reason) == ("extend", "v1", "pool is full")
    assert str(error) == "extend of volume v1 failed: pool is full"


def test_driver_errors_survive_pickling() -> None:
    error = pickle.loads(pickle.dumps(BackendError("delete", "v1", "disk on fire")))

    assert isinstance(error, BackendError)
    assert error.reason == "disk on fire"


# -- FileDriver specifics ---------------------------------------------------------------------


def test_file_driver_needs_distinct_pools(tmp_path: Path) -> None:
    pool = PoolConfig.parse("node1@file-a#pool0:10")

    with pytest.raises(ValueError, match="at least one pool"):
        FileDriver(tmp_path, [])
    with pytest.raises(ValueError, match="twice"):
        FileDriver(tmp_path, [pool, pool])


def test_file_driver_creates_pool_directories(tmp_path: Path) -> None:
    FileDriver(tmp_path, [PoolConfig.parse("node1@file-a#pool0:10")])

    assert (tmp_path / "node1@file-a" / "pool0").is_dir()


async def test_start_removes_temp_files_left_by_a_crash(tmp_path: Path) -> None:
    pools = [PoolConfig.parse("node1@file-a#pool0:10")]
    pool_dir = tmp_path / "node1@file-a" / "pool0"
    pool_dir.mkdir(parents=True)
    leftover = pool_dir / ".volume-v1.img.0badcafe.tmp"
    leftover.write_bytes(b"")
    (pool_dir / "README").write_text("not a volume")
    (pool_dir / "volume-v2.img").mkdir()  # not a regular file: ignored

    driver = FileDriver(tmp_path, pools)

    assert not leftover.exists()
    assert driver.pools()[0].allocated_gb == 0
    assert await driver.create_volume("v1", 1, location=None, step_key="k") == pools[0].location


async def test_create_over_a_non_file_is_a_backend_error(tmp_path: Path) -> None:
    driver = FileDriver(tmp_path, [PoolConfig.parse("node1@file-a#pool0:10")])
    driver.volume_path("v1", "node1@file-a#pool0").mkdir()

    with pytest.raises(BackendError, match="not a regular file"):
        await driver.create_volume("v1", 1, location=None, step_key="k")


def _broken_disk(*_args: object) -> None:
    raise OSError(28, "No space left on device")


async def test_failed_create_releases_its_reservation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = "node1@file-a#pool0"
    driver = FileDriver(tmp_path, [PoolConfig.parse(f"{location}:10")])
    with monkeypatch.context() as patch:
        patch.setattr(imagefiles, "create_sparse", _broken_disk)
        with pytest.raises(BackendError, match="No space left") as caught:
            await driver.create_volume("v1", 4, location=location, step_key="k")

    assert isinstance(caught.value.__cause__, OSError)
    assert driver.pools()[0].allocated_gb == 0
    assert await driver.create_volume("v1", 10, location=location, step_key="k") == location


async def test_failed_extend_releases_its_reservation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = "node1@file-a#pool0"
    driver = FileDriver(tmp_path, [PoolConfig.parse(f"{location}:10")])
    await driver.create_volume("v1", 2, location=location, step_key="create")
    with monkeypatch.context() as patch:
        patch.setattr(imagefiles, "grow", _broken_disk)
        with pytest.raises(BackendError, match="cannot grow"):
            await driver.extend_volume("v1", location, 10, step_key="extend")

    assert driver.pools()[0].allocated_gb == 2
    await driver.extend_volume("v1", location, 10, step_key="extend")
    assert driver.volume_path("v1", location).stat().st_size == 10 * GIB


# -- FileDriver migration specifics -----------------------------------------------------------


async def two_pools(tmp_path: Path) -> FileDriver:
    driver = FileDriver(tmp_path, [PoolConfig.parse(f"{FROM}:10"), PoolConfig.parse(f"{TO}:10")])
    await driver.create_volume("v1", 1, location=FROM, step_key="create")
    write_at(driver.volume_path("v1", FROM), {0: MIB})
    return driver


async def test_failed_copy_releases_its_reservation_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = await two_pools(tmp_path)

    def disk_full(_source: Path, target: Path) -> int:
        target.write_bytes(b"half a copy")
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(copying, "copy_sparse", disk_full)
        with pytest.raises(BackendError, match="No space left") as caught:
            await driver.migrate_volume("v1", FROM, TO, step_key="migrate")

    assert isinstance(caught.value.__cause__, OSError)
    assert files_in(driver.volume_path("v1", TO).parent) == []
    assert [pool.allocated_gb for pool in driver.pools()] == [1, 0]
    assert await driver.migrate_volume("v1", FROM, TO, step_key="migrate") == TO


async def test_cancelled_migrate_releases_its_reservation_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    driver = await two_pools(tmp_path)
    copied, resume = threading.Event(), threading.Event()

    def hold(_copy: Path) -> None:
        copied.set()
        resume.wait(10)

    async def migrate() -> str:
        before_verify.set(hold)  # in this task's context only
        return await driver.migrate_volume("v1", FROM, TO, step_key="migrate")

    task = asyncio.create_task(migrate())
    await asyncio.to_thread(copied.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    resume.set()

    assert files_in(driver.volume_path("v1", TO).parent) == []
    assert [pool.allocated_gb for pool in driver.pools()] == [1, 0]
    assert before_verify.get() is None


async def test_migrate_onto_a_non_file_is_a_backend_error(tmp_path: Path) -> None:
    driver = await two_pools(tmp_path)
    driver.volume_path("v1", TO).mkdir()

    with pytest.raises(BackendError, match="not a regular file"):
        await driver.migrate_volume("v1", FROM, TO, step_key="migrate")

    assert [pool.allocated_gb for pool in driver.pools()] == [1, 0]


async def test_start_removes_a_copy_a_crash_left_half_done(tmp_path: Path) -> None:
    driver = await two_pools(tmp_path)
    leftover = imagefiles.temp_path(driver.volume_path("v1", TO))
    leftover.write_bytes(b"half a copy")

    restarted = FileDriver(tmp_path, [PoolConfig.parse(f"{FROM}:10"), PoolConfig.parse(f"{TO}:10")])

    assert not leftover.exists()
    assert [pool.allocated_gb for pool in restarted.pools()] == [1, 0]
