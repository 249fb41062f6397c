"""The API's typed commands (`cinderblock.domain.commands`): each lets the aggregate decide
exactly as its verb does, and answers what the reply needs."""

from __future__ import annotations

from typing import Any

import pytest

from cinderblock.domain import commands
from cinderblock.domain.errors import InvalidVolumeError, VolumeError, VolumeNotFoundError
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import HOST, IMAGE_ID, available, creating, image

pytestmark = pytest.mark.unit

CONNECTOR = {"host": "compute-1", "initiator": "iqn.1993-08.org.debian:01:c1"}
SERVER = "11111111-1111-4111-8111-111111111111"


def attach(mountpoint: str = "/dev/vdb") -> commands.Attach:
    return commands.Attach(
        "a-1", mountpoint=mountpoint, mode="rw", instance_uuid=SERVER, host_name=None
    )


def recorded(volume: Volume) -> list[str]:
    return [type(e).__name__ for e in volume.collect_events()]


def run(command: commands.VolumeCommand[Any], volume: Volume | None = None) -> Any:
    volume = volume if volume is not None else available()
    volume.collect_events()
    return command.run(volume), volume


def test_reserve_then_attach_then_detach_record_the_verbs_events() -> None:
    volume = available()
    volume.collect_events()
    commands.Reserve().run(volume)
    commands.Attach(
        "a-1", mountpoint="/dev/vdb", mode="rw", instance_uuid=SERVER, host_name=None
    ).run(volume)
    assert recorded(volume) == ["Reserved", "Attached"]
    assert volume.status == Status.IN_USE
    assert commands.Detach("a-1", service=True).run(volume) is None  # no export: at once
    assert recorded(volume) == ["Detached"]
    assert volume.status == Status.AVAILABLE


def test_unreserve_begin_and_roll_detaching() -> None:
    volume = available()
    volume.collect_events()
    commands.Reserve().run(volume)
    commands.Unreserve().run(volume)
    assert recorded(volume) == ["Reserved", "Unreserved"]
    commands.Reserve().run(volume)
    commands.Attach("a-1", mountpoint="", mode="rw", instance_uuid=SERVER, host_name=None).run(
        volume
    )
    volume.collect_events()
    commands.BeginDetaching().run(volume)
    commands.RollDetaching().run(volume)
    assert recorded(volume) == ["DetachingBegun", "DetachingRolledBack"]


def test_initialize_connection_hands_the_export_to_the_saga() -> None:
    version, volume = run(commands.InitializeConnection(CONNECTOR))
    assert recorded(volume) == ["ExportRequested"]
    assert version == volume.version
    assert volume.export_request(version)["connector"] == CONNECTOR  # type: ignore[index]


def test_initialize_connection_of_a_volume_never_placed_is_not_found() -> None:
    with pytest.raises(VolumeNotFoundError):
        run(commands.InitializeConnection(CONNECTOR), creating())


def test_terminate_connection_of_an_exported_connector_asks_the_saga() -> None:
    version, volume = run(commands.InitializeConnection(CONNECTOR))
    volume.complete_export(version, {"driver_volume_type": "local", "data": {}})
    volume.collect_events()
    asked = commands.TerminateConnection(CONNECTOR, service=True).run(volume)
    assert asked == volume.version
    assert recorded(volume) == ["UnexportRequested"]


def test_image_metadata_set_answers_the_merged_metadata_and_unset_removes() -> None:
    merged, volume = run(commands.SetImageMetadata({"a": "1"}))
    assert merged == {"a": "1"}
    commands.UnsetImageMetadata("a").run(volume)
    assert recorded(volume) == ["ImageMetadataSet", "ImageMetadataUnset"]


def test_readonly_flag_and_reset_status() -> None:
    _, volume = run(commands.UpdateReadonlyFlag(True))
    assert volume.admin_metadata["readonly"] == "True"
    commands.ResetStatus(
        status="error", attach_status=None, migration_status=None, migration_given=False
    ).run(volume)
    assert recorded(volume) == ["ReadonlyFlagUpdated", "StatusReset"]
    assert volume.status == Status.ERROR


def test_a_migration_to_an_unknown_destination_is_refused_before_the_volume_decides() -> None:
    unknown = commands.StartMigration(
        "nowhere@x", destination_known=False, force_host_copy=False, lock_volume=False
    )
    with pytest.raises(
        VolumeError, match=r"^Invalid host: No available service named 'nowhere@x'$"
    ):
        run(unknown, creating())  # the volume's own state would refuse too, later
    known = commands.StartMigration(
        "node2@file-b", destination_known=True, force_host_copy=False, lock_volume=True
    )
    _, volume = run(known)
    assert recorded(volume) == ["MigrationStarted"]
    assert volume.status == Status.MAINTENANCE


def test_upload_answers_the_volume_and_reimage_records_the_request() -> None:
    upload = commands.UploadToImage(
        "img-9",
        image_name="backup",
        disk_format="raw",
        container_format="bare",
        visibility="private",
        protected=False,
        force=False,
    )
    answered, volume = run(upload)
    assert answered is volume
    assert recorded(volume) == ["UploadRequested"]
    with pytest.raises(InvalidVolumeError):
        upload.run(volume)  # uploading already
    _, volume = run(commands.Reimage(image(), reimage_reserved=False))
    assert recorded(volume) == ["ReimageRequested"]
    assert volume.host == HOST
    assert volume.pending_reimage["image_id"] == IMAGE_ID  # type: ignore[index]
