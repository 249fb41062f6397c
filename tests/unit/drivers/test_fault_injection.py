"""FaultPlan grammar and every fault mode of FaultInjectingDriver."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cinderblock.drivers.base import GIB, BackendError, CapacityError, PoolConfig
from cinderblock.drivers.faults import (
    DriverCall,
    Fault,
    FaultInjectingDriver,
    FaultPlan,
)
from cinderblock.drivers.file import FileDriver
from tests.unit.drivers.given import MIB, files_in, pattern, read_at, write_at

POOL = "node1@file-a#pool0"
OTHER = "node1@file-a#pool1"


def wrap(tmp_path: Path, spec: str) -> FaultInjectingDriver:
    return FaultInjectingDriver(
        FileDriver(tmp_path, [PoolConfig.parse(f"{POOL}:10")]), FaultPlan.parse(spec)
    )


async def migratable(tmp_path: Path, spec: str, *volume_ids: str) -> FaultInjectingDriver:
    """A wrapped driver with two pools and the given 1 GiB volumes in POOL, with data."""
    pools = [PoolConfig.parse(f"{POOL}:10"), PoolConfig.parse(f"{OTHER}:10")]
    driver = FaultInjectingDriver(FileDriver(tmp_path, pools), FaultPlan.parse(spec))
    for volume_id in volume_ids:
        await driver.create_volume(volume_id, 1, location=POOL, step_key=f"c-{volume_id}")
        write_at(driver.volume_path(volume_id, POOL), {MIB: MIB})
    return driver


# -- FaultPlan --------------------------------------------------------------------------------


def test_plan_is_parsed_per_operation() -> None:
    plan = FaultPlan.parse("extend=fail,create=delay:0.2,delete=fail:2")

    assert plan.fault_for("extend") == Fault("fail")
    assert plan.fault_for("create") == Fault("delay", seconds=0.2)
    assert plan.fault_for("delete") == Fault("fail", times=2)


def test_plan_tolerates_spaces_and_reads_capacity() -> None:
    plan = FaultPlan.parse(" create = capacity , delete=delay:1 ")

    assert plan.fault_for("create") == Fault("capacity")
    assert plan.fault_for("delete") == Fault("delay", seconds=1.0)
    assert plan.fault_for("extend") is None


@pytest.mark.parametrize("spec", ["", "   "])
def test_empty_plan_has_no_faults(spec: str) -> None:
    plan = FaultPlan.parse(spec)

    assert plan == FaultPlan()
    assert plan.describe() == "no faults"
    assert str(plan) == ""


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("extend", "operation=mode"),
        ("extend=", "operation=mode"),
        ("=fail", "operation=mode"),
        ("extend=fail,", "operation=mode"),
        ("resize=fail", "unknown operation 'resize'"),
        ("extend=fail,extend=delay:1", "twice"),
        ("extend=explode", "invalid"),
        ("extend=fail:0", "invalid"),
        ("extend=fail:-1", "invalid"),
        ("extend=fail:two", "invalid"),
        ("extend=fail:", "invalid"),
        ("extend=capacity:3", "invalid"),
        ("extend=delay", "invalid"),
        ("extend=delay:", "invalid"),
        ("extend=delay:-0.5", "invalid"),
        ("extend=delay:soon", "invalid"),
        ("extend=delay:inf", "invalid"),
        ("extend=delay:nan", "invalid"),
    ],
)
def test_invalid_plans_raise_a_clear_value_error(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultPlan.parse(spec)


def test_describe_reads_well_in_logs() -> None:
    plan = FaultPlan.parse("delete=fail:2,extend=fail,create=delay:0.2")

    assert plan.describe() == (
        "create: delay 0.2s; extend: fail every call; delete: fail the first 2 call(s)"
    )
    assert FaultPlan.parse("create=capacity").describe() == (
        "create: raise CapacityError on every call"
    )


def test_str_is_the_canonical_spec_and_parses_back() -> None:
    plan = FaultPlan.parse("delete=fail:2, extend=fail, create=delay:0.25")

    assert str(plan) == "create=delay:0.25,extend=fail,delete=fail:2"
    assert FaultPlan.parse(str(plan)) == plan


@pytest.mark.parametrize(
    ("spec", "fault", "description"),
    [
        ("migrate=corrupt", Fault("corrupt"), "corrupt the copy of every call"),
        ("migrate=corrupt:2", Fault("corrupt", times=2), "corrupt the copy of the first 2 call(s)"),
        ("migrate=fail:1", Fault("fail", times=1), "fail the first 1 call(s)"),
    ],
)
def test_migrate_takes_every_mode_and_corrupt(spec: str, fault: Fault, description: str) -> None:
    plan = FaultPlan.parse(spec)

    assert plan.fault_for("migrate") == fault
    assert plan.describe() == f"migrate: {description}"
    assert str(plan) == spec
    assert FaultPlan.parse(str(plan)) == plan


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("create=corrupt", "corrupt applies to migrate, snapshot, revert, retype only"),
        ("delete=corrupt:1", "corrupt applies to migrate, snapshot, revert, retype only"),
        ("migrate=corrupt:0", "invalid"),
        ("migrate=corrupt:", "invalid"),
        ("migrate=corrupt:many", "invalid"),
        ("migrate=capacity:1", "invalid"),
    ],
)
def test_corrupt_is_for_copying_steps_only(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultPlan.parse(spec)


# -- fault modes ------------------------------------------------------------------------------


async def test_without_a_plan_every_call_passes_and_is_recorded(tmp_path: Path) -> None:
    driver = FaultInjectingDriver(FileDriver(tmp_path, [PoolConfig.parse(f"{POOL}:10")]))

    await driver.create_volume("v1", 1, location=None, step_key="c1")
    await driver.extend_volume("v1", POOL, 2, step_key="e1")
    await driver.delete_volume("v1", POOL, step_key="d1")

    assert driver.calls == [("create", "v1", "c1"), ("extend", "v1", "e1"), ("delete", "v1", "d1")]
    assert driver.injected == []
    assert driver.pools() == driver.inner.pools()
    assert driver.volume_path("v1", POOL) == driver.inner.volume_path("v1", POOL)


async def test_fail_fails_every_call_without_reaching_the_driver(tmp_path: Path) -> None:
    driver = wrap(tmp_path, "extend=fail")
    await driver.create_volume("v1", 1, location=POOL, step_key="create")

    for _ in range(3):
        with pytest.raises(BackendError) as caught:
            await driver.extend_volume("v1", POOL, 2, step_key="extend")
        assert caught.value.reason == "injected failure"
        assert (caught.value.operation, caught.value.volume_id) == ("extend", "v1")

    assert driver.volume_path("v1", POOL).stat().st_size == 1 * GIB
    assert driver.count("extend") == 3
    assert driver.injected == [DriverCall("extend", "v1", "extend")] * 3


async def test_fail_n_fails_the_first_n_calls_then_passes(tmp_path: Path) -> None:
    driver = wrap(tmp_path, "delete=fail:2")
    await driver.create_volume("v1", 1, location=POOL, step_key="create")

    for _ in range(2):
        with pytest.raises(BackendError, match="injected failure"):
            await driver.delete_volume("v1", POOL, step_key="delete")
    assert driver.volume_path("v1", POOL).exists()

    await driver.delete_volume("v1", POOL, step_key="delete")
    await driver.delete_volume("v1", POOL, step_key="delete")

    assert not driver.volume_path("v1", POOL).exists()
    assert driver.count("delete") == 4
    assert len(driver.injected) == 2


async def test_fail_n_counts_per_operation(tmp_path: Path) -> None:
    driver = wrap(tmp_path, "create=fail:1,extend=fail:1")

    with pytest.raises(BackendError):
        await driver.create_volume("v1", 1, location=POOL, step_key="c")
    await driver.create_volume("v1", 1, location=POOL, step_key="c")
    with pytest.raises(BackendError):
        await driver.extend_volume("v1", POOL, 2, step_key="e")
    await driver.extend_volume("v1", POOL, 2, step_key="e")

    assert [call.operation for call in driver.injected] == ["create", "extend"]


async def test_capacity_raises_capacity_error_and_creates_nothing(tmp_path: Path) -> None:
    driver = wrap(tmp_path, "create=capacity")

    with pytest.raises(CapacityError) as caught:
        await driver.create_volume("v1", 1, location=None, step_key="create")

    assert not isinstance(caught.value, BackendError)
    assert caught.value.operation == "create"
    assert not driver.volume_path("v1", POOL).exists()
    assert driver.pools()[0].allocated_gb == 0


async def test_delay_holds_the_call_back_then_passes_it_through(tmp_path: Path) -> None:
    driver = wrap(tmp_path, "create=delay:0.2")

    task = asyncio.create_task(driver.create_volume("v1", 1, location=None, step_key="c"))
    await asyncio.sleep(0)  # the call has started and is now waiting on its delay

    assert driver.calls == [("create", "v1", "c")]
    assert not driver.volume_path("v1", POOL).exists()
    assert await task == POOL
    assert driver.volume_path("v1", POOL).stat().st_size == GIB
    assert driver.injected == []


async def test_faults_on_one_operation_leave_the_others_alone(tmp_path: Path) -> None:
    driver = wrap(tmp_path, "extend=fail")

    await driver.create_volume("v1", 1, location=None, step_key="c")
    await driver.delete_volume("v1", POOL, step_key="d")

    assert driver.injected == []
    assert not driver.volume_path("v1", POOL).exists()


# -- migrate ----------------------------------------------------------------------------------


async def test_migrate_passes_through_and_is_recorded(tmp_path: Path) -> None:
    driver = await migratable(tmp_path, "", "v1")

    location = await driver.migrate_volume("v1", POOL, OTHER, step_key="m1")

    assert location == OTHER
    assert read_at(driver.volume_path("v1", OTHER), MIB, MIB) == pattern(MIB, MIB)
    assert await driver.checksum("v1", OTHER) == await driver.inner.checksum("v1", POOL)
    assert driver.calls[-1] == ("migrate", "v1", "m1")
    assert driver.injected == []


async def test_migrate_fail_copies_nothing(tmp_path: Path) -> None:
    driver = await migratable(tmp_path, "migrate=fail", "v1")

    with pytest.raises(BackendError, match="injected failure") as caught:
        await driver.migrate_volume("v1", POOL, OTHER, step_key="m1")

    assert caught.value.operation == "migrate"
    assert not driver.volume_path("v1", OTHER).exists()
    assert driver.injected == [DriverCall("migrate", "v1", "m1")]


async def test_corrupt_is_caught_by_the_drivers_own_verification(tmp_path: Path) -> None:
    driver = await migratable(tmp_path, "migrate=corrupt", "v1")
    source_sum = await driver.checksum("v1", POOL)

    with pytest.raises(BackendError, match="checksum mismatch") as caught:
        await driver.migrate_volume("v1", POOL, OTHER, step_key="m1")

    assert (caught.value.operation, caught.value.volume_id) == ("migrate", "v1")
    assert source_sum in caught.value.reason
    assert files_in(driver.volume_path("v1", OTHER).parent) == []  # no copy, no temp file
    assert [pool.allocated_gb for pool in driver.pools()] == [1, 0]
    assert await driver.checksum("v1", POOL) == source_sum  # the source is untouched
    assert driver.injected == [DriverCall("migrate", "v1", "m1")]


async def test_corrupt_of_a_volume_without_data_is_caught(tmp_path: Path) -> None:
    driver = await migratable(tmp_path, "migrate=corrupt")
    await driver.create_volume("v1", 1, location=POOL, step_key="c-v1")  # nothing but a hole

    with pytest.raises(BackendError, match="checksum mismatch"):
        await driver.migrate_volume("v1", POOL, OTHER, step_key="m1")

    assert files_in(driver.volume_path("v1", OTHER).parent) == []
    assert driver.injected == [DriverCall("migrate", "v1", "m1")]


async def test_corrupt_n_lets_the_retry_through(tmp_path: Path) -> None:
    driver = await migratable(tmp_path, "migrate=corrupt:1", "v1")

    with pytest.raises(BackendError, match="checksum mismatch"):
        await driver.migrate_volume("v1", POOL, OTHER, step_key="m1")
    location = await driver.migrate_volume("v1", POOL, OTHER, step_key="m1")

    assert location == OTHER
    assert await driver.checksum("v1", OTHER) == await driver.checksum("v1", POOL)
    assert driver.count("migrate") == 2
    assert len(driver.injected) == 1


async def test_corrupt_one_of_two_concurrent_migrations_damages_only_its_own(
    tmp_path: Path,
) -> None:
    driver = await migratable(tmp_path, "migrate=corrupt:1", "v1", "v2")

    results = await asyncio.gather(
        driver.migrate_volume("v1", POOL, OTHER, step_key="m1"),
        driver.migrate_volume("v2", POOL, OTHER, step_key="m2"),
        return_exceptions=True,
    )

    assert isinstance(results[0], BackendError)
    assert "checksum mismatch" in results[0].reason
    assert results[1] == OTHER
    assert files_in(driver.volume_path("v2", OTHER).parent) == ["volume-v2.img"]
    assert [pool.allocated_gb for pool in driver.pools()] == [2, 1]


async def test_corrupt_has_nothing_to_damage_when_the_copy_is_already_verified(
    tmp_path: Path,
) -> None:
    driver = await migratable(tmp_path, "", "v1")
    await driver.migrate_volume("v1", POOL, OTHER, step_key="m1")
    driver.plan = FaultPlan.parse("migrate=corrupt")

    assert await driver.migrate_volume("v1", POOL, OTHER, step_key="m1") == OTHER
    assert driver.injected == []
