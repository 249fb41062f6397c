"""DELETE /volumes/{id} and os-force_delete (spec §2.4, §3.14), then the delete saga's
complete_delete / fail_delete."""

from __future__ import annotations

import pytest

from cinderblock.domain.errors import InvalidVolumeError
from cinderblock.domain.status import DELETABLE, NOT_MIGRATING, AttachStatus, Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import (
    HOST,
    available,
    creating,
    deleting,
    errored_on_create,
    extending,
    in_state,
    recorded,
    state,
)

pytestmark = pytest.mark.unit

NOT_DELETABLE = (
    "Volume status must be available or error or error_restoring or error_extending or "
    "error_managing and must not be migrating, attached, belong to a group, have snapshots, "
    "awaiting a transfer, or be disassociated from snapshots after volume transfer."
)
ATTACHED_OR_MIGRATING = "Volume must not be attached or migrating to be deleted."
UNDELETABLE = [s for s in Status if s not in DELETABLE]


def test_deletable_statuses_are_the_specs() -> None:
    assert {s.value for s in DELETABLE} == {
        "available",
        "error",
        "error_restoring",
        "error_extending",
        "error_managing",
    }
    assert frozenset({None, "deleting", "error", "success"}) == NOT_MIGRATING


# -- never placed: gone at once ---------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_never_placed_creating_volume_is_deleted_at_once(force: bool) -> None:
    volume = creating()

    assert volume.request_delete(force=force) is True

    assert recorded(volume.collect_events()) == [
        (Volume.DeleteRequested, {"previous_status": "creating", "forced": force}),
        (Volume.Deleted, {}),
    ]
    assert volume.status is Status.DELETED
    assert volume.is_deleted is True
    assert volume.previous_status is Status.CREATING


def test_never_placed_errored_volume_is_deleted_at_once() -> None:
    volume = errored_on_create()

    assert volume.request_delete() is True

    assert recorded(volume.collect_events()) == [
        (Volume.DeleteRequested, {"previous_status": "error", "forced": False}),
        (Volume.Deleted, {}),
    ]
    assert volume.is_deleted is True


def test_never_placed_volume_skips_the_attachment_and_migration_checks() -> None:
    """Spec §2.4: a volume with no host is removed with no status/attachment checks."""
    volume = in_state(
        creating(), Status.CREATING, attach_status=AttachStatus.ATTACHED, migration_status="x"
    )

    assert volume.request_delete() is True

    assert volume.is_deleted is True


def test_complete_delete_after_an_immediate_delete_records_nothing() -> None:
    volume = creating()
    volume.request_delete()
    volume.collect_events()

    assert volume.complete_delete() is False
    assert volume.fail_delete("late") is False

    assert volume.collect_events() == []
    assert volume.status is Status.DELETED


# -- placed: the saga removes it --------------------------------------------------------------


def test_delete_of_an_available_volume_waits_for_the_backend() -> None:
    volume = available()

    assert volume.request_delete() is False

    assert recorded(volume.collect_events()) == [
        (Volume.DeleteRequested, {"previous_status": "available", "forced": False})
    ]
    assert volume.status is Status.DELETING
    assert volume.previous_status is Status.AVAILABLE
    assert volume.is_deleted is False
    assert volume.host == HOST


@pytest.mark.parametrize("status", sorted(DELETABLE), ids=lambda s: s.value)
def test_every_deletable_status_may_be_deleted(status: Status) -> None:
    volume = in_state(available(), status)

    assert volume.request_delete() is False

    assert recorded(volume.collect_events()) == [
        (Volume.DeleteRequested, {"previous_status": status.value, "forced": False})
    ]
    assert volume.status is Status.DELETING


def test_error_extending_volume_may_be_deleted() -> None:
    volume, version = extending()
    volume.fail_extend(version, "backend exploded", restore=False)
    volume.collect_events()

    assert volume.request_delete() is False

    assert recorded(volume.collect_events()) == [
        (Volume.DeleteRequested, {"previous_status": "error_extending", "forced": False})
    ]


@pytest.mark.parametrize("status", UNDELETABLE, ids=lambda s: s.value)
def test_other_statuses_need_force(status: Status) -> None:
    volume = in_state(available(), status)
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.request_delete()

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == NOT_DELETABLE
    assert raised.value.code == "invalid_volume"
    assert volume.collect_events() == []
    assert state(volume) == before


def test_extending_volume_cannot_be_deleted_without_force() -> None:
    volume, _ = extending()

    with pytest.raises(InvalidVolumeError, match=r"^Volume status must be available or error"):
        volume.request_delete()

    assert volume.collect_events() == []
    assert volume.status is Status.EXTENDING


@pytest.mark.parametrize("status", UNDELETABLE, ids=lambda s: s.value)
def test_force_deletes_from_any_status(status: Status) -> None:
    volume = in_state(available(), status)

    assert volume.request_delete(force=True) is False

    assert recorded(volume.collect_events()) == [
        (Volume.DeleteRequested, {"previous_status": status.value, "forced": True})
    ]
    assert volume.status is Status.DELETING
    assert volume.previous_status is status


@pytest.mark.parametrize("force", [False, True])
def test_attached_volume_is_never_deleted(force: bool) -> None:
    volume = in_state(available(), Status.AVAILABLE, attach_status=AttachStatus.ATTACHED)
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.request_delete(force=force)

    assert raised.value.message == ATTACHED_OR_MIGRATING
    assert volume.collect_events() == []
    assert state(volume) == before


def test_status_is_checked_before_attachment_without_force() -> None:
    volume = in_state(available(), Status.IN_USE, attach_status=AttachStatus.ATTACHED)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.request_delete()

    assert raised.value.message == NOT_DELETABLE


@pytest.mark.parametrize(
    "attach_status",
    [a for a in AttachStatus if a is not AttachStatus.ATTACHED],
    ids=lambda a: a.value,
)
def test_only_attached_blocks_delete(attach_status: AttachStatus) -> None:
    volume = in_state(available(), Status.AVAILABLE, attach_status=attach_status)

    assert volume.request_delete() is False

    assert volume.status is Status.DELETING


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("migration_status", ["starting", "migrating", "completing", "target:x"])
def test_migrating_volume_is_never_deleted(migration_status: str, force: bool) -> None:
    volume = in_state(available(), Status.AVAILABLE, migration_status=migration_status)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.request_delete(force=force)

    assert raised.value.message == ATTACHED_OR_MIGRATING
    assert volume.collect_events() == []
    assert volume.status is Status.AVAILABLE


@pytest.mark.parametrize("migration_status", [None, "deleting", "error", "success"])
def test_settled_migration_status_allows_delete(migration_status: str | None) -> None:
    volume = in_state(available(), Status.AVAILABLE, migration_status=migration_status)

    assert volume.request_delete() is False

    assert volume.status is Status.DELETING


# -- complete_delete / fail_delete ------------------------------------------------------------


def test_complete_delete_marks_the_volume_deleted() -> None:
    volume = deleting()

    assert volume.complete_delete() is True

    assert recorded(volume.collect_events()) == [(Volume.Deleted, {})]
    assert volume.status is Status.DELETED
    assert volume.is_deleted is True


def test_complete_delete_twice_records_nothing_the_second_time() -> None:
    volume = deleting()
    volume.complete_delete()
    volume.collect_events()
    before = state(volume)

    assert volume.complete_delete() is False

    assert volume.collect_events() == []
    assert state(volume) == before


@pytest.mark.parametrize("status", [Status.AVAILABLE, Status.ERROR_DELETING, Status.EXTENDING])
def test_complete_delete_outside_deleting_records_nothing(status: Status) -> None:
    volume = in_state(available(), status)

    assert volume.complete_delete() is False

    assert volume.collect_events() == []
    assert volume.status is status


def test_fail_delete_sets_error_deleting() -> None:
    volume = deleting()

    assert volume.fail_delete("backend exploded") is True

    assert recorded(volume.collect_events()) == [
        (Volume.DeleteFailed, {"reason": "backend exploded"})
    ]
    assert volume.status is Status.ERROR_DELETING
    assert volume.is_deleted is False


def test_fail_delete_twice_records_nothing_the_second_time() -> None:
    volume = deleting()
    volume.fail_delete("backend exploded")
    volume.collect_events()

    assert volume.fail_delete("again") is False
    assert volume.complete_delete() is False

    assert volume.collect_events() == []
    assert volume.status is Status.ERROR_DELETING


def test_fail_delete_after_completion_records_nothing() -> None:
    volume = deleting()
    volume.complete_delete()
    volume.collect_events()

    assert volume.fail_delete("late") is False

    assert volume.collect_events() == []
    assert volume.status is Status.DELETED


def test_error_deleting_volume_needs_force_to_retry() -> None:
    volume = deleting()
    volume.fail_delete("backend exploded")
    volume.collect_events()

    with pytest.raises(InvalidVolumeError, match=r"^Volume status must be"):
        volume.request_delete()
    assert volume.collect_events() == []

    assert volume.request_delete(force=True) is False
    assert recorded(volume.collect_events()) == [
        (Volume.DeleteRequested, {"previous_status": "error_deleting", "forced": True})
    ]
    assert volume.complete_delete() is True
    assert volume.is_deleted is True
