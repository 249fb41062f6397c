"""The snapshot, revert, delete, upload, reimage, migrate and create sagas' decisions
(`cinderblock.domain.sagas.snapshots`, `.images`, `.migrate`, `.lifecycle`): what to do
next from the snapshot's and the volume's state, and nothing once the request is
settled."""

from __future__ import annotations

from uuid import UUID

import pytest

from cinderblock.domain.sagas.images import (
    NOT_PLACED,
    ReimageDecision,
    ReimageStep,
    UploadRun,
    decide_reimage,
    upload_to_give_up,
    upload_to_run,
)
from cinderblock.domain.sagas.lifecycle import abandoned_during_create, image_write_to_undo
from cinderblock.domain.sagas.migrate import partial_copies
from cinderblock.domain.sagas.snapshots import (
    NO_BACKEND,
    RevertRun,
    SnapshotDecision,
    SnapshotStep,
    copy_outlived_snapshot,
    decide_snapshot_create,
    decide_snapshot_delete,
    decide_snapshot_in_volume_delete,
    revert_to_run,
)
from cinderblock.domain.snapshot import Snapshot, SnapshotStatus
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import HOST, available, errored_on_create, volume_fields

pytestmark = pytest.mark.unit

SNAP = UUID(int=5)
IMAGE = {"id": "img-1", "status": "active", "size": 1}


def a_snapshot(volume: Volume) -> Snapshot:
    snapshot = Snapshot.take(
        SNAP,
        volume_id=volume.vid,
        project_id=volume.project_id,
        user_id="u",
        name=None,
        description=None,
        volume_size=volume.size_gb,
        metadata={},
        volume_type_name=volume.volume_type_name,
    )
    snapshot.collect_events()
    return snapshot


# -- snapshot create --------------------------------------------------------------------------


def test_a_creating_snapshot_is_copied_on_its_volumes_host() -> None:
    volume = available()
    decision = decide_snapshot_create(a_snapshot(volume), volume)
    assert decision == SnapshotDecision(SnapshotStep.COPY, host=HOST)


def test_a_snapshot_of_a_volume_on_no_backend_fails() -> None:
    volume = errored_on_create()
    snapshot = a_snapshot(available())
    expected = SnapshotDecision(SnapshotStep.FAIL, reason=NO_BACKEND)
    assert decide_snapshot_create(snapshot, volume) == expected
    assert decide_snapshot_create(snapshot, None) == expected


def test_a_snapshot_no_longer_creating_is_left_alone() -> None:
    volume = available()
    snapshot = a_snapshot(volume)
    snapshot.complete_create()
    assert decide_snapshot_create(snapshot, volume).step is SnapshotStep.SKIP
    assert decide_snapshot_create(None, volume).step is SnapshotStep.SKIP


@pytest.mark.parametrize(
    ("status", "outlived"),
    [
        (SnapshotStatus.DELETING, True),
        (SnapshotStatus.DELETED, True),
        (SnapshotStatus.AVAILABLE, False),
        (SnapshotStatus.ERROR, False),
    ],
)
def test_a_copy_outlives_a_snapshot_going_or_gone(status: str, outlived: bool) -> None:
    snapshot = a_snapshot(available())
    snapshot.status = status
    assert copy_outlived_snapshot(snapshot) is outlived


def test_no_snapshot_no_copy_to_remove() -> None:
    assert not copy_outlived_snapshot(None)


# -- snapshot delete --------------------------------------------------------------------------


def deleting_snapshot(volume: Volume) -> Snapshot:
    snapshot = a_snapshot(volume)
    snapshot.complete_create()
    snapshot.request_delete()
    return snapshot


def test_a_deleting_snapshot_is_removed_from_its_volumes_host() -> None:
    volume = available()
    decision = decide_snapshot_delete(deleting_snapshot(volume), volume)
    assert decision == SnapshotDecision(SnapshotStep.REMOVE, host=HOST)


def test_a_snapshot_of_a_volume_on_no_backend_is_just_recorded_deleted() -> None:
    snapshot = deleting_snapshot(available())
    assert decide_snapshot_delete(snapshot, errored_on_create()).step is SnapshotStep.FORGET
    assert decide_snapshot_delete(snapshot, None).step is SnapshotStep.FORGET


def test_a_snapshot_deleted_with_its_volume_is_left_to_the_volumes_delete_saga() -> None:
    volume = available()
    snapshot = deleting_snapshot(volume)
    volume.request_delete(with_snapshots=True)
    assert decide_snapshot_delete(snapshot, volume).step is SnapshotStep.SKIP


def test_a_snapshot_not_deleting_is_left_alone() -> None:
    volume = available()
    assert decide_snapshot_delete(a_snapshot(volume), volume).step is SnapshotStep.SKIP
    assert decide_snapshot_delete(None, volume).step is SnapshotStep.SKIP


# -- revert -----------------------------------------------------------------------------------


def reverting() -> tuple[Volume, int]:
    volume = available()
    volume.take_snapshot(str(SNAP), force=False, in_use_ok=False)
    volume.request_revert(str(SNAP), volume.size_gb)
    return volume, volume.collect_events()[-1].originator_version


def test_a_pending_revert_restores_its_snapshot_on_the_volumes_host() -> None:
    volume, version = reverting()
    assert revert_to_run(volume, version) == RevertRun(str(SNAP), HOST)


def test_a_revert_settled_or_of_another_version_is_not_run() -> None:
    volume, version = reverting()
    assert revert_to_run(volume, version + 1) is None
    assert revert_to_run(None, version) is None
    volume.complete_revert(version)
    assert revert_to_run(volume, version) is None


def test_a_revert_of_a_volume_without_host_is_not_run() -> None:
    volume, version = reverting()
    volume.host = None
    assert revert_to_run(volume, version) is None


# -- upload -----------------------------------------------------------------------------------


def uploading() -> tuple[Volume, int]:
    volume = available()
    volume.request_upload(
        "img-9",
        image_name="backup",
        disk_format="raw",
        container_format="bare",
        visibility="private",
        protected=False,
        force=False,
    )
    return volume, volume.collect_events()[-1].originator_version


def test_a_pending_upload_fills_its_image_from_the_volumes_host() -> None:
    volume, version = uploading()
    assert upload_to_run(volume, version) == UploadRun("img-9", HOST)
    assert upload_to_give_up(volume, version) == "img-9"


def test_an_upload_settled_or_of_another_version_is_not_run() -> None:
    volume, version = uploading()
    assert upload_to_run(volume, version + 1) is None
    assert upload_to_give_up(volume, version + 1) is None
    volume.complete_upload(version, "sha")
    assert upload_to_run(volume, version) is None
    assert upload_to_give_up(volume, version) is None
    assert upload_to_run(None, version) is None
    assert upload_to_give_up(None, version) is None


def test_an_upload_of_a_volume_without_host_is_not_run_but_can_be_given_up() -> None:
    volume, version = uploading()
    volume.host = None
    assert upload_to_run(volume, version) is None
    assert upload_to_give_up(volume, version) == "img-9"


# -- reimage ----------------------------------------------------------------------------------


def reimaging(volume: Volume) -> int:
    volume.request_reimage(IMAGE, reimage_reserved=False)
    return int(volume.collect_events()[-1].originator_version)


def test_a_pending_reimage_writes_the_image_on_the_volumes_host() -> None:
    volume = available()
    version = reimaging(volume)
    expected = ReimageDecision(ReimageStep.WRITE, "img-1", host=HOST)
    assert decide_reimage(volume, version) == expected


def test_a_reimage_of_a_volume_never_placed_fails() -> None:
    volume = errored_on_create()
    version = reimaging(volume)
    expected = ReimageDecision(ReimageStep.FAIL, "img-1", reason=NOT_PLACED)
    assert decide_reimage(volume, version) == expected


def test_a_reimage_settled_or_of_another_version_is_skipped() -> None:
    volume = available()
    version = reimaging(volume)
    assert decide_reimage(volume, version + 1).step is ReimageStep.SKIP
    assert decide_reimage(None, version).step is ReimageStep.SKIP
    volume.complete_reimage(version, "sha")
    assert decide_reimage(volume, version).step is ReimageStep.SKIP


# -- a snapshot in its volume's (cascade) delete ----------------------------------------------


def test_a_deleting_snapshot_in_a_volume_delete_is_removed_on_the_volumes_host() -> None:
    snapshot = deleting_snapshot(available())
    decision = decide_snapshot_in_volume_delete(snapshot.sid, snapshot, HOST)
    assert decision == SnapshotDecision(SnapshotStep.REMOVE, host=HOST)


def test_a_snapshot_deleted_or_gone_is_skipped_in_a_volume_delete() -> None:
    snapshot = deleting_snapshot(available())
    snapshot.complete_delete()
    assert decide_snapshot_in_volume_delete(snapshot.sid, snapshot, HOST).step is (
        SnapshotStep.SKIP
    )
    assert decide_snapshot_in_volume_delete("gone", None, HOST).step is SnapshotStep.SKIP


def test_a_snapshot_in_another_status_fails_the_volume_delete() -> None:
    snapshot = a_snapshot(available())
    snapshot.complete_create()
    decision = decide_snapshot_in_volume_delete(snapshot.sid, snapshot, HOST)
    assert decision == SnapshotDecision(
        SnapshotStep.FAIL, reason=f"snapshot {snapshot.sid} is available, not deleting"
    )


# -- migration: partial copies ----------------------------------------------------------------

POOLS = ["node1@file-a#pool0", "node1@file-b#pool0", "node1@file-b#pool1", "node2@file-b#p"]


def test_partial_copies_are_every_pool_of_the_destination_backend_but_the_volumes() -> None:
    found = partial_copies(POOLS, "node1@file-b", "node1@file-b#pool1")
    assert found == ["node1@file-b#pool0"]


def test_a_destination_pool_names_only_itself() -> None:
    assert partial_copies(POOLS, "node1@file-b#pool1", HOST) == ["node1@file-b#pool1"]


def test_no_partial_copies_of_a_volume_without_host() -> None:
    assert partial_copies(POOLS, "node1@file-b", None) == []


# -- create: compensation -----------------------------------------------------------------------


def test_a_volume_deleted_before_it_was_placed_was_abandoned_during_create() -> None:
    volume = Volume.create(UUID(int=9), **volume_fields())
    assert not abandoned_during_create(volume)
    volume.request_delete()
    assert abandoned_during_create(volume)
    assert not abandoned_during_create(None)


def test_a_placed_volume_was_not_abandoned() -> None:
    volume = available()
    volume.request_delete()
    volume.complete_delete()
    assert not abandoned_during_create(volume)


def test_giving_up_a_create_from_an_image_undoes_the_write() -> None:
    volume = Volume.create(UUID(int=9), **volume_fields())
    volume.set_image_source(IMAGE)
    assert image_write_to_undo(volume)
    volume.complete_create_from_image(HOST, "sha")
    assert not image_write_to_undo(volume)


def test_giving_up_a_plain_create_has_no_image_write_to_undo() -> None:
    assert not image_write_to_undo(Volume.create(UUID(int=9), **volume_fields()))
    assert not image_write_to_undo(None)
