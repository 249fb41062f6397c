"""Exports (initialize_connection / terminate_connection), on every driver of the compliance
suite: a record on disk per export while attached, gone after detach, one connector at a
time for a volume that is not multiattach, idempotent both ways; and the attach/detach
fault modes of the wrapper."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cinderblock.drivers.base import BackendError, ExportConflictError, ExportSpec, VolumeDriver
from cinderblock.drivers.faults import FaultInjectingDriver, FaultPlan
from cinderblock.drivers.file import FileDriver
from tests.unit.drivers.given import LARGE, POOLS, SHARED, SMALL

COMPUTE_1 = {"host": "compute-1", "initiator": "iqn.1", "mountpoint": "/dev/vdb"}
COMPUTE_2 = {"host": "compute-2", "initiator": "iqn.2", "mountpoint": "/dev/vdb"}


def spec(export_id: str, connector: object = COMPUTE_1, **fields: object) -> ExportSpec:
    return ExportSpec(export_id, connector, **fields)  # type: ignore[arg-type]


def export_files(root: Path, volume_id: str) -> list[str]:
    found = root.glob(f"*/.exports/volume-{volume_id}/*.json")
    return sorted(p.name for p in found)


async def test_an_export_is_a_record_on_disk_until_terminated(
    driver: VolumeDriver, tmp_path: Path
) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")

    info = await driver.initialize_connection("v1", SMALL, spec("att-1"), step_key="k1")

    assert info == {
        "driver_volume_type": "local",
        "data": {
            "device_path": str(driver.volume_path("v1", SMALL)),
            "access_mode": "rw",
            "qos_specs": None,
            "encrypted": False,
            "discard": True,
            "enforce_multipath": False,
        },
        "enforce_multipath": False,
    }
    root = tmp_path / "backend"
    assert export_files(root, "v1") == ["att-1.json"]
    record = json.loads((root / "node1@file-a/.exports/volume-v1/att-1.json").read_text())
    assert (record["identity"], record["connector"], record["connection_info"]) == (
        "compute-1",
        COMPUTE_1,
        info,
    )
    assert [e["export_id"] for e in driver.exports("v1", SMALL)] == ["att-1"]

    assert await driver.terminate_connection("v1", SMALL, "att-1", step_key="k2") is True
    assert export_files(root, "v1") == []
    assert not (root / "node1@file-a/.exports/volume-v1").exists()
    assert driver.exports("v1", SMALL) == []


async def test_exporting_again_returns_the_recorded_connection(
    driver: VolumeDriver, tmp_path: Path
) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")
    first = await driver.initialize_connection("v1", SMALL, spec("att-1"), step_key="k1")
    path = tmp_path / "backend/node1@file-a/.exports/volume-v1/att-1.json"
    written = path.stat().st_mtime_ns

    again = await driver.initialize_connection("v1", SMALL, spec("att-1"), step_key="k1")

    assert again == first
    assert path.stat().st_mtime_ns == written  # answered from the record, not rewritten
    assert len(driver.exports("v1", SMALL)) == 1


async def test_terminating_twice_or_an_unknown_export_succeeds(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")
    await driver.initialize_connection("v1", SMALL, spec("att-1"), step_key="k1")

    assert await driver.terminate_connection("v1", SMALL, "att-1", step_key="k2") is True
    assert await driver.terminate_connection("v1", SMALL, "att-1", step_key="k2") is False
    assert await driver.terminate_connection("v1", SMALL, "never", step_key="k3") is False


async def test_a_second_exclusive_export_to_another_host_is_refused(
    driver: VolumeDriver,
) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")
    await driver.initialize_connection(
        "v1", SMALL, spec("att-1", instance_uuid="server-1"), step_key="k1"
    )

    with pytest.raises(ExportConflictError) as refused:
        await driver.initialize_connection(
            "v1", SMALL, spec("att-2", COMPUTE_2, instance_uuid="server-2"), step_key="k2"
        )

    assert refused.value.operation == "attach"
    assert "compute-1" in refused.value.reason
    assert isinstance(refused.value, BackendError)
    assert [e["export_id"] for e in driver.exports("v1", SMALL)] == ["att-1"]


async def test_the_same_host_may_hold_a_second_export(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")
    await driver.initialize_connection(
        "v1", SMALL, spec("att-1", instance_uuid="server-1"), step_key="k1"
    )

    await driver.initialize_connection("v1", SMALL, spec("host-compute-1"), step_key="k2")

    exported = {e["export_id"]: e["identity"] for e in driver.exports("v1", SMALL)}
    assert exported == {"att-1": "compute-1", "host-compute-1": "compute-1"}


async def test_the_same_server_may_hold_a_second_host(driver: VolumeDriver) -> None:
    """Nova's live migration: the destination's attachment, for the same server."""
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")
    await driver.initialize_connection(
        "v1", SMALL, spec("att-1", instance_uuid="server-1"), step_key="k1"
    )

    await driver.initialize_connection(
        "v1", SMALL, spec("att-2", COMPUTE_2, instance_uuid="server-1"), step_key="k2"
    )

    exported = {e["export_id"]: e["identity"] for e in driver.exports("v1", SMALL)}
    assert exported == {"att-1": "compute-1", "att-2": "compute-2"}
    with pytest.raises(ExportConflictError):  # but not to a third server
        await driver.initialize_connection(
            "v1", SMALL, spec("att-3", {"host": "c3"}, instance_uuid="server-3"), step_key="k3"
        )


async def test_a_multiattach_volume_is_exported_to_many_hosts(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 1, location=SHARED, step_key="c")
    for n, connector in enumerate((COMPUTE_1, COMPUTE_2)):
        await driver.initialize_connection(
            "v1", SHARED, spec(f"att-{n}", connector, multiattach=True), step_key=f"k{n}"
        )

    assert len(driver.exports("v1", SHARED)) == 2


async def test_a_freed_volume_can_be_exported_elsewhere(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")
    await driver.initialize_connection("v1", SMALL, spec("att-1"), step_key="k1")
    await driver.terminate_connection("v1", SMALL, "att-1", step_key="k2")

    info = await driver.initialize_connection("v1", SMALL, spec("att-2", COMPUTE_2), step_key="k3")

    assert info["driver_volume_type"] == "local"


async def test_a_new_connector_for_the_same_export_replaces_it(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")
    await driver.initialize_connection("v1", SMALL, spec("att-1"), step_key="k1")

    info = await driver.initialize_connection(
        "v1",
        SMALL,
        spec("att-1", COMPUTE_2 | {"enforce_multipath": True}, access_mode="ro"),
        step_key="k2",
    )

    assert (info["data"]["access_mode"], info["enforce_multipath"]) == ("ro", True)
    [record] = driver.exports("v1", SMALL)
    assert record["identity"] == "compute-2"


async def test_the_connection_reports_encryption_and_a_string_connector(
    driver: VolumeDriver,
) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")

    info = await driver.initialize_connection(
        "v1", SMALL, spec("host-x", "node-x", encrypted=True), step_key="k"
    )

    assert (info["data"]["encrypted"], info["enforce_multipath"]) == (True, False)
    assert driver.exports("v1", SMALL)[0]["identity"] == "node-x"


async def test_no_export_of_a_missing_volume_or_to_an_unsafe_name(driver: VolumeDriver) -> None:
    with pytest.raises(BackendError) as missing:
        await driver.initialize_connection("v1", SMALL, spec("att-1"), step_key="k")
    assert missing.value.operation == "attach"
    with pytest.raises(BackendError):
        await driver.initialize_connection("v1", "nowhere@x#y", spec("att-1"), step_key="k")
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")
    with pytest.raises(ValueError, match="not a safe file name"):
        await driver.initialize_connection("v1", SMALL, spec("../escape"), step_key="k")
    assert driver.exports("v1", SMALL) == []


async def test_concurrent_exclusive_exports_let_one_through(driver: VolumeDriver) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")

    results = await asyncio.gather(
        driver.initialize_connection("v1", SMALL, spec("att-1"), step_key="k1"),
        driver.initialize_connection("v1", SMALL, spec("att-2", COMPUTE_2), step_key="k2"),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["ExportConflictError", "dict"]
    assert len(driver.exports("v1", SMALL)) == 1


async def test_exports_survive_a_restart_and_stay_out_of_the_pools(tmp_path: Path) -> None:
    first = FileDriver(tmp_path, POOLS)
    await first.create_volume("v1", 1, location=SMALL, step_key="c")
    await first.initialize_connection("v1", SMALL, spec("att-1"), step_key="k")
    before = first.pools()

    restarted = FileDriver(tmp_path, POOLS)

    assert restarted.pools() == before
    assert [e["export_id"] for e in restarted.exports("v1", SMALL)] == ["att-1"]
    assert restarted.export_dir("v1", SMALL) == tmp_path / "node1@file-a/.exports/volume-v1"


@pytest.mark.parametrize(("operation", "call"), [("attach", "export"), ("detach", "remove")])
async def test_attach_and_detach_faults(tmp_path: Path, operation: str, call: str) -> None:
    inner = FileDriver(tmp_path, POOLS)
    driver = FaultInjectingDriver(inner, FaultPlan.parse(f"{operation}=fail:1"))
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")
    if call == "remove":
        await inner.initialize_connection("v1", SMALL, spec("att-1"), step_key="k0")

    async def step() -> object:
        if call == "export":
            return await driver.initialize_connection("v1", SMALL, spec("att-1"), step_key="k")
        return await driver.terminate_connection("v1", SMALL, "att-1", step_key="k")

    with pytest.raises(BackendError) as failed:
        await step()
    assert (failed.value.operation, failed.value.reason) == (operation, "injected failure")
    # the failed call never reached the driver: the export is as it was
    assert len(driver.exports("v1", SMALL)) == (1 if call == "remove" else 0)
    await step()  # fail:1 lets the next one through
    assert len(driver.exports("v1", SMALL)) == (0 if call == "remove" else 1)
    assert driver.count(operation) == 2
    assert [c.operation for c in driver.injected] == [operation]


def test_attach_and_detach_are_fault_operations() -> None:
    plan = FaultPlan.parse("attach=fail,detach=delay:0.1")
    assert str(plan) == "attach=fail,detach=delay:0.1"
    assert "attach: fail every call" in plan.describe()


@pytest.mark.parametrize("step", ["delete", "unmanage"])
async def test_deleting_or_unmanaging_removes_the_volumes_exports(
    driver: VolumeDriver, step: str
) -> None:
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")
    await driver.create_volume("v2", 1, location=SMALL, step_key="c")
    await driver.initialize_connection("v1", SMALL, spec("att-1"), step_key="k1")
    await driver.initialize_connection("v2", SMALL, spec("att-2"), step_key="k2")

    if step == "delete":
        await driver.delete_volume("v1", SMALL, step_key="d")
        await driver.delete_volume("v1", SMALL, step_key="d")  # again: nothing left to do
    else:
        await driver.unmanage_volume("v1", SMALL, step_key="u")

    assert driver.exports("v1", SMALL) == []
    assert [e["export_id"] for e in driver.exports("v2", SMALL)] == ["att-2"]


async def test_removing_an_old_copy_keeps_the_exports_of_the_live_one(
    driver: VolumeDriver,
) -> None:
    """A migration within one backend deletes the source copy: exports recorded for the
    destination's image stay."""
    await driver.create_volume("v1", 1, location=SMALL, step_key="c")
    moved = await driver.migrate_volume("v1", SMALL, LARGE, step_key="m")
    await driver.initialize_connection("v1", moved, spec("att-1"), step_key="k")

    await driver.delete_volume("v1", SMALL, step_key="d")

    assert [e["export_id"] for e in driver.exports("v1", moved)] == ["att-1"]
