"""os-extend (spec §3.1): request_extend, then the saga's complete_extend / fail_extend."""

from __future__ import annotations

import pytest

from cinderblock.domain.errors import (
    InvalidInputError,
    InvalidVolumeError,
    StaleCommandError,
    VolumeStatusError,
)
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import (
    HOST,
    available,
    creating,
    extending,
    in_state,
    recorded,
    state,
)

pytestmark = pytest.mark.unit


def status_message(volume: Volume, status: str) -> str:
    return (
        f"Volume {volume.vid} status must be '{{'status': 'available'}}' to extend, "
        f"currently {status}."
    )


# -- request_extend: accepted -----------------------------------------------------------------


def test_extend_of_an_available_volume_records_extend_requested() -> None:
    volume = available()

    volume.request_extend(20, in_use_allowed=False, reservation_id="res-1")

    events = volume.collect_events()
    assert recorded(events) == [
        (
            Volume.ExtendRequested,
            {"new_size_gb": 20, "previous_status": "available", "reservation_id": "res-1"},
        )
    ]
    assert type(events[0].previous_status) is str  # stored as the enum's value
    assert volume.status is Status.EXTENDING
    assert volume.previous_status is Status.AVAILABLE
    assert volume.size_gb == 10  # grows only when the backend has grown it
    assert volume.pending_extend == {
        "new_size_gb": 20,
        "reservation_id": "res-1",
        "request_version": events[0].originator_version,
    }
    assert volume.version == events[0].originator_version == 3


def test_extend_by_one_gigabyte_is_accepted() -> None:
    volume = available()

    volume.request_extend(11, in_use_allowed=False, reservation_id="res-1")

    assert [type(e) for e in volume.collect_events()] == [Volume.ExtendRequested]


def test_attached_extend_of_an_in_use_volume_is_accepted() -> None:
    volume = in_state(available(), Status.IN_USE, attachment_ids=["att-1"])

    volume.request_extend(20, in_use_allowed=True, reservation_id="res-1")

    assert recorded(volume.collect_events()) == [
        (
            Volume.ExtendRequested,
            {"new_size_gb": 20, "previous_status": "in-use", "reservation_id": "res-1"},
        )
    ]
    assert volume.status is Status.EXTENDING
    assert volume.previous_status is Status.IN_USE


def test_attached_extend_still_allows_an_available_volume() -> None:
    volume = available()

    volume.request_extend(20, in_use_allowed=True, reservation_id="res-1")

    assert [type(e) for e in volume.collect_events()] == [Volume.ExtendRequested]
    assert volume.previous_status is Status.AVAILABLE


# -- request_extend: rejected -----------------------------------------------------------------


@pytest.mark.parametrize("new_size_gb", [10, 9, 1, 0, -5])
def test_extend_must_grow_the_volume(new_size_gb: int) -> None:
    volume = available()
    before = state(volume)

    with pytest.raises(InvalidInputError) as raised:
        volume.request_extend(new_size_gb, in_use_allowed=False, reservation_id="res-1")

    assert type(raised.value) is InvalidInputError
    assert raised.value.message == (
        "New size for extend must be greater than current size. "
        f"(current: 10, extended: {new_size_gb})."
    )
    assert volume.collect_events() == []
    assert state(volume) == before


def test_size_is_checked_before_status() -> None:
    """Spec §3.1 order: step 4 (size) comes before step 6 (status)."""
    volume = creating()

    with pytest.raises(InvalidInputError, match=r"\(current: 10, extended: 5\)\.$"):
        volume.request_extend(5, in_use_allowed=False, reservation_id="res-1")

    assert volume.collect_events() == []


@pytest.mark.parametrize(
    "status", [s for s in Status if s is not Status.AVAILABLE], ids=lambda s: s.value
)
def test_extend_requires_available(status: Status) -> None:
    volume = in_state(available(), status)
    before = state(volume)

    with pytest.raises(VolumeStatusError) as raised:
        volume.request_extend(20, in_use_allowed=False, reservation_id="res-1")

    error = raised.value
    assert isinstance(error, InvalidVolumeError)
    assert error.code == "invalid_status"
    assert error.message == status_message(volume, status.value)
    assert "status must be '{'status': 'available'}' to extend, currently " in str(error)
    assert (error.volume_id, error.status, error.action) == (volume.vid, status.value, "extend")
    assert volume.collect_events() == []
    assert state(volume) == before


@pytest.mark.parametrize(
    "status",
    [s for s in Status if s not in (Status.AVAILABLE, Status.IN_USE)],
    ids=lambda s: s.value,
)
def test_attached_extend_requires_available_or_in_use(status: Status) -> None:
    volume = in_state(available(), status)
    before = state(volume)

    with pytest.raises(VolumeStatusError) as raised:
        volume.request_extend(20, in_use_allowed=True, reservation_id="res-1")

    assert raised.value.message == status_message(volume, status.value)
    assert volume.collect_events() == []
    assert state(volume) == before


def test_in_use_volume_needs_the_attached_extend_microversion() -> None:
    volume = in_state(available(), Status.IN_USE, attachment_ids=["att-1"])

    with pytest.raises(VolumeStatusError) as raised:
        volume.request_extend(20, in_use_allowed=False, reservation_id="res-1")

    assert raised.value.message == status_message(volume, "in-use")
    assert volume.collect_events() == []
    assert volume.status is Status.IN_USE


def test_creating_volume_cannot_be_extended() -> None:
    volume = creating()

    with pytest.raises(VolumeStatusError) as raised:
        volume.request_extend(20, in_use_allowed=True, reservation_id="res-1")

    assert raised.value.message == status_message(volume, "creating")
    assert volume.collect_events() == []


def test_second_extend_while_one_is_pending_is_rejected() -> None:
    volume, version = extending(20, reservation_id="res-1")

    with pytest.raises(VolumeStatusError) as raised:
        volume.request_extend(30, in_use_allowed=True, reservation_id="res-2")

    assert raised.value.message == status_message(volume, "extending")
    assert volume.collect_events() == []
    assert volume.pending_extend == {
        "new_size_gb": 20,
        "reservation_id": "res-1",
        "request_version": version,
    }


# -- complete_extend --------------------------------------------------------------------------


def test_complete_extend_grows_the_volume_and_returns_the_reservation() -> None:
    volume, version = extending(20, reservation_id="res-1")

    assert volume.complete_extend(version) == "res-1"

    events = volume.collect_events()
    assert recorded(events) == [
        (Volume.Extended, {"new_size_gb": 20, "status": "available", "previous_size_gb": 10})
    ]
    assert type(events[0].status) is str
    assert volume.size_gb == 20
    assert volume.status is Status.AVAILABLE
    assert volume.pending_extend is None
    assert volume.host == HOST


def test_complete_extend_of_an_attached_volume_returns_it_to_in_use() -> None:
    volume = in_state(available(), Status.IN_USE, attachment_ids=["att-1"])
    volume.request_extend(20, in_use_allowed=True, reservation_id="res-1")
    (requested,) = volume.collect_events()

    assert volume.complete_extend(requested.originator_version) == "res-1"

    assert recorded(volume.collect_events()) == [
        (Volume.Extended, {"new_size_gb": 20, "status": "in-use", "previous_size_gb": 10})
    ]
    assert volume.status is Status.IN_USE
    assert volume.size_gb == 20


@pytest.mark.parametrize("offset", [-2, -1, 1, 100])
def test_complete_extend_for_another_request_version_is_stale(offset: int) -> None:
    volume, version = extending()
    before = state(volume)

    with pytest.raises(StaleCommandError) as raised:
        volume.complete_extend(version + offset)

    assert raised.value.message == (
        f"No extend of volume {volume.vid} pending at {version + offset}."
    )
    assert raised.value.code == "stale_command"
    assert volume.collect_events() == []
    assert state(volume) == before


def test_complete_extend_without_a_pending_extend_is_stale() -> None:
    volume = available()

    with pytest.raises(StaleCommandError, match=r"pending at 3\.$"):
        volume.complete_extend(3)

    assert volume.collect_events() == []


def test_complete_extend_twice_is_stale_the_second_time() -> None:
    volume, version = extending()
    volume.complete_extend(version)
    volume.collect_events()
    before = state(volume)

    with pytest.raises(StaleCommandError):
        volume.complete_extend(version)

    assert volume.collect_events() == []
    assert state(volume) == before
    assert volume.size_gb == 20


def test_completion_of_an_old_extend_does_not_settle_a_newer_one() -> None:
    volume, first = extending(20, reservation_id="res-1")
    volume.complete_extend(first)
    volume.request_extend(30, in_use_allowed=False, reservation_id="res-2")
    (second_requested,) = volume.collect_events()[-1:]
    second = second_requested.originator_version
    assert second != first

    with pytest.raises(StaleCommandError):
        volume.complete_extend(first)

    assert volume.complete_extend(second) == "res-2"
    assert volume.size_gb == 30


# -- fail_extend ------------------------------------------------------------------------------


def test_fail_extend_with_restore_returns_to_the_previous_status() -> None:
    """No capacity: not an error, the volume goes back to where it was (spec §3.1)."""
    volume, version = extending(20, reservation_id="res-1")

    assert volume.fail_extend(version, "no capacity", restore=True) == "res-1"

    assert recorded(volume.collect_events()) == [
        (Volume.ExtendFailed, {"reason": "no capacity", "status": "available"})
    ]
    assert volume.status is Status.AVAILABLE
    assert volume.size_gb == 10
    assert volume.pending_extend is None


def test_fail_extend_with_restore_returns_an_attached_volume_to_in_use() -> None:
    volume = in_state(available(), Status.IN_USE, attachment_ids=["att-1"])
    volume.request_extend(20, in_use_allowed=True, reservation_id="res-1")
    (requested,) = volume.collect_events()

    volume.fail_extend(requested.originator_version, "no capacity", restore=True)

    assert recorded(volume.collect_events()) == [
        (Volume.ExtendFailed, {"reason": "no capacity", "status": "in-use"})
    ]
    assert volume.status is Status.IN_USE


def test_fail_extend_without_restore_sets_error_extending() -> None:
    volume, version = extending(20, reservation_id="res-1")

    assert volume.fail_extend(version, "backend exploded", restore=False) == "res-1"

    assert recorded(volume.collect_events()) == [
        (Volume.ExtendFailed, {"reason": "backend exploded", "status": "error_extending"})
    ]
    assert volume.status is Status.ERROR_EXTENDING
    assert volume.size_gb == 10
    assert volume.pending_extend is None


@pytest.mark.parametrize("restore", [True, False])
def test_fail_extend_for_another_request_version_is_stale(restore: bool) -> None:
    volume, version = extending()
    before = state(volume)

    with pytest.raises(StaleCommandError, match=rf"pending at {version + 1}\.$"):
        volume.fail_extend(version + 1, "late", restore=restore)

    assert volume.collect_events() == []
    assert state(volume) == before


@pytest.mark.parametrize("restore", [True, False])
def test_fail_extend_after_completion_is_stale(restore: bool) -> None:
    volume, version = extending()
    volume.complete_extend(version)
    volume.collect_events()
    before = state(volume)

    with pytest.raises(StaleCommandError):
        volume.fail_extend(version, "gave up", restore=restore)

    assert volume.collect_events() == []
    assert state(volume) == before
    assert volume.status is Status.AVAILABLE


def test_complete_extend_after_compensation_is_stale() -> None:
    volume, version = extending()
    volume.fail_extend(version, "backend exploded", restore=False)
    volume.collect_events()

    with pytest.raises(StaleCommandError):
        volume.complete_extend(version)

    assert volume.collect_events() == []
    assert (volume.status, volume.size_gb) == (Status.ERROR_EXTENDING, 10)


def test_error_extending_volume_cannot_be_extended_again() -> None:
    volume, version = extending()
    volume.fail_extend(version, "backend exploded", restore=False)
    volume.collect_events()

    with pytest.raises(VolumeStatusError) as raised:
        volume.request_extend(30, in_use_allowed=True, reservation_id="res-2")

    assert raised.value.message == status_message(volume, "error_extending")
    assert volume.collect_events() == []


# -- an extend raced by a forced delete -------------------------------------------------------


def test_complete_extend_after_a_forced_delete_completed_is_stale() -> None:
    volume, version = extending()
    volume.request_delete(force=True)
    volume.complete_delete()
    volume.collect_events()

    with pytest.raises(StaleCommandError):
        volume.complete_extend(version)

    assert volume.status is Status.DELETED
    assert volume.collect_events() == []


@pytest.mark.parametrize("restore", [True, False])
def test_fail_extend_after_a_forced_delete_completed_is_stale(restore: bool) -> None:
    volume, version = extending()
    volume.request_delete(force=True)
    volume.complete_delete()
    volume.collect_events()

    with pytest.raises(StaleCommandError):
        volume.fail_extend(version, "gave up after repeated failures", restore=restore)

    assert volume.status is Status.DELETED
    assert volume.collect_events() == []


def test_complete_extend_while_a_forced_delete_is_pending_is_stale() -> None:
    volume, version = extending()
    volume.request_delete(force=True)
    volume.collect_events()

    with pytest.raises(StaleCommandError):
        volume.complete_extend(version)

    assert volume.status is Status.DELETING
    assert volume.collect_events() == []
