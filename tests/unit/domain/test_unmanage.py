"""os-unmanage (spec §3.9): request_unmanage, then the saga's complete_unmanage /
fail_unmanage, and its decision needs_unmanage."""

from __future__ import annotations

from typing import Any

import pytest

from cinderblock.domain.errors import InvalidVolumeError
from cinderblock.domain.sagas.lifecycle import needs_unmanage
from cinderblock.domain.status import AttachStatus, Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import (
    HOST,
    VOLUME_ID,
    Story,
    available,
    creating,
    errored_on_create,
    extending,
    in_state,
    recorded,
    state,
    story,
    volume_fields,
)

pytestmark = pytest.mark.unit

UNMANAGEABLE = [
    Status.AVAILABLE,
    Status.ERROR,
    Status.ERROR_RESTORING,
    Status.ERROR_EXTENDING,
    Status.ERROR_MANAGING,
]


def names(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def refusal(status: str) -> str:
    return (
        "Volume status must be available or error or error_restoring or error_extending or "
        "error_managing and must not be migrating, attached, belong to a group or have "
        f"snapshots to be unmanaged, currently {status}."
    )


def unmanaging() -> Story:
    """Given: an available volume, UnmanageRequested."""
    s = story()
    s.volume.request_unmanage()
    s.new_events()
    return s


def assert_replays(s: Story) -> None:
    """The whole history (including what is still pending) rebuilds the same volume."""
    s.new_events()
    assert state(s.rebuilt()) == state(s.volume)


# -- request_unmanage: accepted ---------------------------------------------------------------


def test_unmanage_of_an_available_volume_records_unmanage_requested() -> None:
    s = story()

    assert s.volume.request_unmanage() is False  # the saga finishes it

    events = s.new_events()
    assert names(events) == ["UnmanageRequested"]
    assert recorded(events) == [(Volume.UnmanageRequested, {"previous_status": "available"})]
    assert type(events[0].previous_status) is str
    assert s.volume.status is Status.UNMANAGING
    assert s.volume.previous_status is Status.AVAILABLE
    assert s.volume.host == HOST
    assert needs_unmanage(s.volume) is True
    assert_replays(s)


@pytest.mark.parametrize(
    "status",
    [s for s in UNMANAGEABLE if s is not Status.ERROR_MANAGING],
    ids=lambda s: s.value,
)
def test_unmanage_from_each_allowed_status(status: Status) -> None:
    volume = in_state(available(), status)

    assert volume.request_unmanage() is False

    assert recorded(volume.collect_events()) == [
        (Volume.UnmanageRequested, {"previous_status": status.value})
    ]
    assert volume.status is Status.UNMANAGING
    assert volume.previous_status is status


def test_unmanage_of_error_managing_goes_to_error_managing_deleting() -> None:
    volume = in_state(available(), Status.ERROR_MANAGING)

    assert volume.request_unmanage() is False

    assert recorded(volume.collect_events()) == [
        (Volume.UnmanageRequested, {"previous_status": "error_managing"})
    ]
    assert volume.status is Status.ERROR_MANAGING_DELETING
    assert needs_unmanage(volume) is True


def test_unmanage_after_a_failed_extend() -> None:
    volume, version = extending()
    volume.fail_extend(version, "backend exploded", restore=False)
    volume.collect_events()

    volume.request_unmanage()

    assert recorded(volume.collect_events()) == [
        (Volume.UnmanageRequested, {"previous_status": "error_extending"})
    ]
    assert volume.status is Status.UNMANAGING
    assert volume.pending_extend is None


@pytest.mark.parametrize("migration_status", [None, "deleting", "error", "success"])
def test_unmanage_when_not_migrating(migration_status: str | None) -> None:
    volume = in_state(available(), Status.AVAILABLE, migration_status=migration_status)

    assert volume.request_unmanage() is False

    assert names(volume.collect_events()) == ["UnmanageRequested"]


def test_unmanage_after_a_completed_migration() -> None:
    s = story()
    s.volume.start_migration("node2@file-b#pool0", force_host_copy=False, lock_volume=True)
    (started,) = s.new_events()
    s.volume.complete_migration(started.originator_version, "node2@file-b#pool0")
    s.new_events()

    assert s.volume.request_unmanage() is False

    assert names(s.new_events()) == ["UnmanageRequested"]
    assert s.volume.host == "node2@file-b#pool0"
    assert_replays(s)


# -- request_unmanage: never placed -----------------------------------------------------------


def test_unmanage_of_a_volume_never_placed_is_immediate() -> None:
    volume = creating()

    assert volume.request_unmanage() is True

    assert recorded(volume.collect_events()) == [
        (Volume.UnmanageRequested, {"previous_status": "creating"}),
        (Volume.Unmanaged, {}),
    ]
    assert volume.status is Status.DELETED
    assert volume.is_deleted
    assert needs_unmanage(volume) is False


def test_unmanage_of_a_volume_whose_create_failed_is_immediate() -> None:
    volume = errored_on_create()

    assert volume.request_unmanage() is True

    assert names(volume.collect_events()) == ["UnmanageRequested", "Unmanaged"]
    assert volume.status is Status.DELETED
    assert volume.host is None


def test_unmanage_of_a_hostless_volume_reset_to_available_is_immediate() -> None:
    volume = errored_on_create()
    volume.reset_status(
        status="available", attach_status=None, migration_status=None, migration_given=False
    )
    volume.collect_events()

    gone = volume.request_unmanage()

    assert (gone, volume.status) == (True, Status.DELETED)


# -- request_unmanage: refused ----------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [s for s in Status if s not in UNMANAGEABLE],
    ids=lambda s: s.value,
)
def test_unmanage_requires_an_unmanageable_status(status: Status) -> None:
    volume = in_state(available(), status)
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.request_unmanage()

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.code == "invalid_volume"
    assert raised.value.message == refusal(status.value)
    assert volume.collect_events() == []
    assert state(volume) == before


def test_unmanage_of_an_attached_volume_is_refused() -> None:
    s = story()
    s.volume.attach("att-1", mountpoint="/dev/vdb", mode="rw", instance_uuid="i-1", host_name=None)
    s.new_events()
    before = state(s.volume)

    with pytest.raises(InvalidVolumeError) as raised:
        s.volume.request_unmanage()

    assert raised.value.message == refusal("in-use")
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_unmanage_of_an_available_but_attached_volume_is_refused() -> None:
    volume = in_state(available(), Status.AVAILABLE, attach_status=AttachStatus.ATTACHED)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.request_unmanage()

    assert raised.value.message == refusal("available")
    assert volume.collect_events() == []


@pytest.mark.parametrize("migration_status", ["starting", "migrating", "completing"])
def test_unmanage_of_a_migrating_volume_is_refused(migration_status: str) -> None:
    volume = in_state(available(), Status.AVAILABLE, migration_status=migration_status)
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.request_unmanage()

    assert raised.value.message == refusal("available")
    assert volume.collect_events() == []
    assert state(volume) == before


def test_unmanage_during_an_unlocked_migration_is_refused() -> None:
    s = story()
    s.volume.start_migration("node2@file-b", force_host_copy=False, lock_volume=False)
    s.new_events()

    with pytest.raises(InvalidVolumeError, match=r"currently available\.$"):
        s.volume.request_unmanage()

    assert s.volume.collect_events() == []


def test_unmanage_twice_is_refused() -> None:
    s = unmanaging()
    before = state(s.volume)

    with pytest.raises(InvalidVolumeError) as raised:
        s.volume.request_unmanage()

    assert raised.value.message == refusal("unmanaging")
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


# -- complete_unmanage / fail_unmanage --------------------------------------------------------


def test_complete_unmanage_removes_the_volume() -> None:
    s = unmanaging()

    assert s.volume.complete_unmanage() is True

    events = s.new_events()
    assert recorded(events) == [(Volume.Unmanaged, {})]
    assert s.volume.status is Status.DELETED
    assert s.volume.is_deleted
    assert needs_unmanage(s.volume) is False
    assert_replays(s)


def test_complete_unmanage_from_error_managing_deleting() -> None:
    volume = in_state(available(), Status.ERROR_MANAGING)
    volume.request_unmanage()
    volume.collect_events()

    assert volume.complete_unmanage() is True

    assert names(volume.collect_events()) == ["Unmanaged"]
    assert volume.status is Status.DELETED


def test_complete_unmanage_twice_records_nothing_the_second_time() -> None:
    s = unmanaging()
    s.volume.complete_unmanage()
    s.new_events()
    before = state(s.volume)

    assert s.volume.complete_unmanage() is False

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


@pytest.mark.parametrize(
    "status",
    [s for s in Status if s not in (Status.UNMANAGING, Status.ERROR_MANAGING_DELETING)],
    ids=lambda s: s.value,
)
def test_complete_or_fail_unmanage_outside_unmanaging_records_nothing(status: Status) -> None:
    volume = in_state(available(), status)
    before = state(volume)

    assert volume.complete_unmanage() is False
    assert volume.fail_unmanage("late") is False

    assert volume.collect_events() == []
    assert state(volume) == before


def test_fail_unmanage_sets_error_unmanaging() -> None:
    s = unmanaging()

    assert s.volume.fail_unmanage("backend exploded") is True

    events = s.new_events()
    assert names(events) == ["UnmanageFailed"]
    assert recorded(events) == [(Volume.UnmanageFailed, {"reason": "backend exploded"})]
    assert s.volume.status is Status.ERROR_UNMANAGING
    assert s.volume.host == HOST
    assert needs_unmanage(s.volume) is False
    assert_replays(s)


def test_fail_unmanage_from_error_managing_deleting() -> None:
    volume = in_state(available(), Status.ERROR_MANAGING)
    volume.request_unmanage()
    volume.collect_events()

    assert volume.fail_unmanage("no") is True

    assert volume.status is Status.ERROR_UNMANAGING


def test_after_a_failed_unmanage_the_volume_cannot_be_unmanaged_again() -> None:
    s = unmanaging()
    s.volume.fail_unmanage("backend exploded")
    s.new_events()

    assert s.volume.fail_unmanage("again") is False
    assert s.volume.complete_unmanage() is False
    with pytest.raises(InvalidVolumeError) as raised:
        s.volume.request_unmanage()

    assert raised.value.message == refusal("error_unmanaging")
    assert s.volume.collect_events() == []


# -- needs_unmanage ---------------------------------------------------------------------------


def test_needs_unmanage_without_a_volume() -> None:
    assert needs_unmanage(None) is False


@pytest.mark.parametrize(
    ("status", "expected"),
    [(s, s in (Status.UNMANAGING, Status.ERROR_MANAGING_DELETING)) for s in Status],
    ids=lambda v: v.value if isinstance(v, Status) else str(v),
)
def test_needs_unmanage_while_unmanaging_a_placed_volume(status: Status, expected: bool) -> None:
    volume = in_state(available(), status)

    assert needs_unmanage(volume) is expected
    assert volume.collect_events() == []


def test_needs_unmanage_not_without_a_host() -> None:
    volume = in_state(available(), Status.UNMANAGING, host=None)

    assert needs_unmanage(volume) is False


# -- replay -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "finish",
    [
        lambda v: None,
        lambda v: v.complete_unmanage(),
        lambda v: v.fail_unmanage("backend exploded"),
    ],
    ids=["requested", "unmanaged", "failed"],
)
def test_replay_rebuilds_the_live_volume(finish: Any) -> None:
    s = unmanaging()
    finish(s.volume)
    s.new_events()

    rebuilt = s.rebuilt()

    assert state(rebuilt) == state(s.volume)
    assert rebuilt.version == len(s.events)


def test_replay_of_an_immediate_unmanage() -> None:
    volume = Volume.create(VOLUME_ID, **volume_fields())
    volume.request_unmanage()
    s = Story(volume, volume.collect_events())

    assert names(s.events) == ["Created", "UnmanageRequested", "Unmanaged"]
    assert state(s.rebuilt()) == state(volume)


def refuse(*_: Any, **__: Any) -> Any:
    pytest.fail("replay ran a decision")


def test_replay_runs_no_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    s = unmanaging()
    s.volume.fail_unmanage("x")
    s.new_events()
    for name in ("request_unmanage", "complete_unmanage", "fail_unmanage"):
        monkeypatch.setattr(Volume, name, refuse)

    assert_replays(s)
