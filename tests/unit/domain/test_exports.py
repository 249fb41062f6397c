"""Exports handed to the export saga (issue 10 part 8): os-initialize_connection and the
attachments API ask for an export, the saga records it (ExportCreated, and for an
attachment AttachmentConnected) or its failure (ExportFailed, a reservation made by the same
request taken back); detaching actions that free exports ask for their removal first
(UnexportRequested), and the saga records the detach after it (ExportsRemoved + Detached)
or nothing but the failure (UnexportFailed)."""

from __future__ import annotations

from typing import Any

import pytest

from cinderblock.domain import exports
from cinderblock.domain.errors import (
    AttachmentConflictError,
    InvalidVolumeError,
    StaleCommandError,
)
from cinderblock.domain.status import AttachStatus, Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import HOST, available

pytestmark = pytest.mark.unit

A1 = "aaaaaaaa-1111-4111-8111-111111111111"
A2 = "aaaaaaaa-2222-4222-8222-222222222222"
S1 = "11111111-1111-4111-8111-111111111111"
COMPUTE_1 = {"host": "compute-1", "mountpoint": "/dev/vdb", "initiator": "iqn.1"}
INFO = {
    "driver_volume_type": "local",
    "data": {"device_path": "/x/volume.img", "access_mode": "rw"},
    "enforce_multipath": False,
}


def names(volume: Volume) -> list[str]:
    return [type(e).__name__ for e in volume.collect_events()]


def rebuilt(events: list[Any]) -> Volume:
    volume: Volume | None = None
    for e in events:
        volume = e.mutate(volume)
    assert volume is not None
    return volume


def reserved(**fields: Any) -> Volume:
    volume = available(**fields)
    volume.create_attachment(A1, instance_uuid=S1, mode=None)
    volume.collect_events()
    return volume


def connected() -> tuple[Volume, int]:
    """An attachment A1 connected through the saga (attaching, export A1 held)."""
    volume = reserved()
    version = volume.request_attachment_export(A1, COMPUTE_1)
    assert volume.complete_export(version, INFO)
    volume.collect_events()
    return volume, version


def test_initialize_connection_asks_for_an_export_per_connector() -> None:
    volume = available()

    version = volume.request_connection(COMPUTE_1)

    (requested,) = volume.collect_events()
    assert type(requested).__name__ == "ExportRequested"
    assert version == requested.originator_version
    assert (requested.export_id, requested.attachment_id, requested.mode) == (
        "host-compute-1",
        None,
        "rw",
    )
    assert volume.export_request(version) is not None
    assert volume.status == Status.AVAILABLE  # no state a reader sees changes


def test_legacy_export_ids_are_safe_names() -> None:
    assert exports.legacy_export_id({"host": "Node 1/é"}) == "host-Node-1"
    assert exports.legacy_export_id({"initiator": "iqn.2010-10.org:x"}) == "host-iqn.2010-10.org-x"
    assert exports.legacy_export_id("node-x") == "host-node-x"
    assert exports.legacy_export_id(None) == exports.legacy_export_id({}) == "host-unknown"


def test_initialize_connection_refuses_maintenance() -> None:
    volume = available()
    volume.status = Status.MAINTENANCE
    with pytest.raises(InvalidVolumeError):
        volume.request_connection(COMPUTE_1)


def test_a_completed_legacy_export_is_held_and_settles_once() -> None:
    volume = available()
    version = volume.request_connection(COMPUTE_1)

    assert volume.complete_export(version, INFO)

    assert names(volume)[-1] == "ExportCreated"
    assert exports.registry(volume) == {
        "host-compute-1": {"attachment_id": None, "identity": "compute-1"}
    }
    assert volume.export_request(version) is None
    with pytest.raises(StaleCommandError):
        volume.complete_export(version, INFO)
    with pytest.raises(StaleCommandError):
        volume.fail_export(version, "late")


def test_an_attachment_export_connects_the_attachment() -> None:
    volume = reserved()
    version = volume.request_attachment_export(A1, COMPUTE_1)
    assert volume.attachments[A1]["attach_status"] == "reserved"  # until the saga answers

    volume.complete_export(version, INFO)

    assert names(volume) == ["ExportRequested", "ExportCreated", "AttachmentConnected"]
    row = volume.attachments[A1]
    assert (row["attach_status"], row["attached_host"], row["mountpoint"]) == (
        "attaching",
        "compute-1",
        "/dev/vdb",
    )
    assert row["connection_info"]["data"]["attachment_id"] == A1
    assert (volume.status, volume.attach_status) == (Status.ATTACHING, AttachStatus.ATTACHING)


def test_an_attachment_export_keeps_the_update_rules() -> None:
    volume = reserved()
    volume.status = Status.ERROR
    with pytest.raises(AttachmentConflictError):
        volume.request_attachment_export(A1, COMPUTE_1)


def test_a_failed_update_leaves_the_reservation() -> None:
    volume = reserved()
    version = volume.request_attachment_export(A1, COMPUTE_1)
    volume.collect_events()

    volume.fail_export(version, "injected failure")

    assert names(volume) == ["ExportFailed"]
    assert volume.attachments[A1]["attach_status"] == "reserved"
    assert volume.status == Status.RESERVED


def test_a_failed_create_with_a_connector_takes_the_reservation_back() -> None:
    volume = available()
    volume.create_attachment(A1, instance_uuid=S1, mode=None)
    version = volume.request_attachment_export(A1, COMPUTE_1, reserved=True)
    volume.collect_events()

    volume.fail_export(version, "injected failure")

    assert names(volume) == ["ExportFailed", "Detached"]
    assert volume.attachments == {}
    assert (volume.status, volume.attach_status) == (Status.AVAILABLE, AttachStatus.DETACHED)


def test_an_export_for_an_attachment_deleted_meanwhile_is_abandoned() -> None:
    volume = reserved()
    version = volume.request_attachment_export(A1, COMPUTE_1)
    assert volume.request_attachment_delete(A1) is None  # nothing exported yet: at once
    volume.collect_events()

    assert volume.complete_export(version, INFO) is False

    assert names(volume) == ["ExportFailed"]
    assert exports.registry(volume) == {}


def test_deleting_an_exported_attachment_removes_the_export_first() -> None:
    volume, _ = connected()

    version = volume.request_attachment_delete(A1)

    assert version is not None
    assert names(volume) == ["UnexportRequested"]
    assert A1 in volume.attachments  # still there until the export is gone
    volume.finish_unexport(version)
    assert names(volume) == ["ExportsRemoved", "Detached"]
    assert volume.attachments == {}
    assert exports.registry(volume) == {}
    assert volume.status == Status.AVAILABLE


def test_a_failed_removal_detaches_nothing() -> None:
    volume, _ = connected()
    version = volume.request_attachment_delete(A1)
    assert version is not None
    volume.collect_events()

    volume.fail_unexport(version, "injected failure")

    assert names(volume) == ["UnexportFailed"]
    assert A1 in volume.attachments
    assert A1 in exports.registry(volume)
    assert volume.status == Status.ATTACHING
    with pytest.raises(StaleCommandError):
        volume.finish_unexport(version)


def test_detach_frees_the_attachments_export() -> None:
    volume, _ = connected()
    volume.complete_attachment(A1)
    volume.collect_events()

    version = volume.request_detach(A1)

    assert version is not None
    volume.finish_unexport(version)
    assert names(volume) == ["UnexportRequested", "ExportsRemoved", "Detached"]
    assert (volume.status, volume.attachments) == (Status.AVAILABLE, {})


def test_detach_without_exports_is_at_once_as_before() -> None:
    volume = available()
    volume.reserve()
    volume.attach(A1, mountpoint="/dev/vdb", mode="rw", instance_uuid=S1, host_name=None)
    volume.collect_events()

    assert volume.request_detach(A1) is None

    assert names(volume) == ["Detached"]


def test_legacy_flow_terminate_removes_the_connectors_export() -> None:
    volume = available()
    volume.reserve()
    made = volume.request_connection(COMPUTE_1)
    volume.complete_export(made, INFO)
    volume.attach(A1, mountpoint="/dev/vdb", mode="rw", instance_uuid=S1, host_name=None)
    volume.begin_detaching()
    volume.collect_events()

    version = volume.request_terminate_connection(COMPUTE_1)

    assert version is not None
    volume.finish_unexport(version)
    assert names(volume) == ["UnexportRequested", "ExportsRemoved"]
    assert exports.registry(volume) == {}
    assert volume.request_detach(A1) is None  # nothing left to remove: at once
    assert volume.status == Status.AVAILABLE


def test_terminate_without_an_export_unreserves_at_once() -> None:
    volume = available()
    volume.reserve()
    volume.collect_events()

    assert volume.request_terminate_connection(None) is None

    assert names(volume) == ["Unreserved"]


def test_the_last_detach_frees_the_legacy_exports() -> None:
    volume = available()
    made = volume.request_connection(COMPUTE_1)
    volume.complete_export(made, INFO)
    volume.attach(A1, mountpoint="/dev/vdb", mode="rw", instance_uuid=S1, host_name=None)
    volume.collect_events()

    version = volume.request_detach(None)

    assert version is not None
    assert volume.unexport_request(version) == {
        "export_ids": ["host-compute-1"],
        "then": "detach",
        "attachment_id": A1,
    }


def test_force_detach_removes_both_and_detaches() -> None:
    volume, _ = connected()
    made = volume.request_connection({"host": "compute-1"})
    volume.complete_export(made, INFO)
    volume.status = Status.ERROR
    volume.collect_events()

    version = volume.request_force_detach(A1, None)

    assert version is not None
    assert volume.unexport_request(version)["export_ids"] == sorted([A1, "host-compute-1"])  # type: ignore[index]
    volume.finish_unexport(version)
    assert names(volume) == ["UnexportRequested", "ExportsRemoved", "Detached"]
    assert (volume.status, volume.attachments, exports.registry(volume)) == (
        Status.AVAILABLE,
        {},
        {},
    )


def test_detach_checks_come_before_any_request() -> None:
    volume, _ = connected()
    volume.complete_attachment(A1)
    volume.create_attachment(A2, instance_uuid=S1, mode=None)  # the same server again
    volume.collect_events()
    with pytest.raises(AttachmentConflictError):
        volume.request_detach(None)
    with pytest.raises(AttachmentConflictError):
        volume.request_terminate_connection(COMPUTE_1)
    with pytest.raises(InvalidVolumeError):
        volume.request_detach(None, service=True)
    assert volume.collect_events() == []


def test_export_state_replays() -> None:
    volume = available()
    history: list[Any] = []
    made = volume.request_connection(COMPUTE_1)
    volume.complete_export(made, INFO)
    volume.create_attachment(A1, instance_uuid=S1, mode=None)
    pending = volume.request_attachment_export(A1, COMPUTE_1)
    history += volume.collect_events()

    again = rebuilt(
        [
            *Volume.create(volume.id, **_fields()).collect_events(),
            *_placed(volume.id),
            *history,
        ]
    )

    assert exports.registry(again) == exports.registry(volume)
    assert again.export_request(pending) == volume.export_request(pending)
    assert again.host == HOST


def _fields() -> dict[str, Any]:
    from tests.unit.domain.given import volume_fields

    return volume_fields()


def _placed(volume_id: Any) -> list[Any]:
    fresh = Volume.create(volume_id, **_fields())
    fresh.collect_events()
    fresh.complete_create(HOST)
    return list(fresh.collect_events())


def test_referenced_exports_leave_out_those_of_removed_attachments() -> None:
    volume, _ = connected()
    made = volume.request_connection({"host": "compute-1"})
    volume.complete_export(made, INFO)
    volume.complete_attachment(A1)
    volume.create_attachment(A2, instance_uuid=S1, mode=None)  # the same server again
    volume.request_attachment_export(A2, {"host": "compute-2"})
    assert volume.referenced_exports() == {A1, A2, "host-compute-1"}

    volume.reset_status(
        status="available", attach_status="detached", migration_status=None, migration_given=False
    )

    assert volume.referenced_exports() == {A2, "host-compute-1"}  # A2: still asked for
