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

POOL = "node1@file-a#pool0"


def wrap(tmp_path: Path, spec: str) -> FaultInjectingDriver:
    return FaultInjectingDriver(
        FileDriver(tmp_path, [PoolConfig.parse(f"{POOL}:10")]), FaultPlan.parse(spec)
    )


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
