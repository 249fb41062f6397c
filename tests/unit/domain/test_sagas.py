"""The sagas' pure decisions: decide_extend, needs_create, needs_delete."""

from __future__ import annotations

import pytest

from cinderblock.domain.sagas.extend import (
    NO_VALID_BACKEND,
    ExtendDecision,
    ExtendStep,
    decide_extend,
)
from cinderblock.domain.sagas.lifecycle import needs_create, needs_delete
from cinderblock.domain.status import Status
from tests.unit.domain.given import (
    HOST,
    available,
    creating,
    deleting,
    errored_on_create,
    extending,
    in_state,
    state,
)

pytestmark = pytest.mark.unit

SKIP = ExtendDecision(ExtendStep.SKIP)


# -- decide_extend ----------------------------------------------------------------------------


def test_grow_a_pending_extend_on_its_host() -> None:
    volume, version = extending(20)

    decision = decide_extend(volume, version)

    assert decision == ExtendDecision(ExtendStep.GROW, new_size_gb=20, location=HOST)
    assert volume.collect_events() == []


def test_skip_has_no_size_or_location() -> None:
    assert (SKIP.new_size_gb, SKIP.location) == (0, "")


def test_skip_a_missing_volume() -> None:
    assert decide_extend(None, 3) == SKIP


@pytest.mark.parametrize("offset", [-1, 1])
def test_skip_another_request_version(offset: int) -> None:
    volume, version = extending()

    assert decide_extend(volume, version + offset) == SKIP


def test_skip_an_extend_already_completed() -> None:
    volume, version = extending()
    volume.complete_extend(version)

    assert decide_extend(volume, version) == SKIP


@pytest.mark.parametrize("restore", [True, False])
def test_skip_an_extend_already_compensated(restore: bool) -> None:
    volume, version = extending()
    volume.fail_extend(version, "failed", restore=restore)

    assert decide_extend(volume, version) == SKIP


def test_skip_an_extend_overtaken_by_a_forced_delete() -> None:
    volume, version = extending()
    volume.request_delete(force=True)

    assert decide_extend(volume, version) == SKIP


def test_an_extending_volume_on_no_backend_is_failed_back() -> None:
    """A volume never placed (its create failed, an admin reset it to available) has no
    backend to grow it: the extend is failed back (Cinder's NoValidBackend), never left
    extending (was SKIP: the model-based test found such extends stuck forever)."""
    volume, version = extending(20)
    in_state(volume, Status.EXTENDING, host=None)

    assert decide_extend(volume, version) == ExtendDecision(ExtendStep.NO_BACKEND, 20)
    volume.fail_extend(version, NO_VALID_BACKEND, restore=True)
    assert decide_extend(volume, version) == SKIP  # a redelivery after the compensation


def test_skip_an_extending_volume_without_a_pending_request() -> None:
    volume = in_state(available(), Status.EXTENDING)

    assert decide_extend(volume, volume.version) == SKIP


@pytest.mark.parametrize(
    "status", [s for s in Status if s is not Status.EXTENDING], ids=lambda s: s.value
)
def test_skip_unless_extending(status: Status) -> None:
    volume, version = extending()
    in_state(volume, status)

    assert decide_extend(volume, version) == SKIP


def test_grow_follows_the_newest_request() -> None:
    volume, first = extending(20, reservation_id="res-1")
    volume.complete_extend(first)
    volume.request_extend(30, in_use_allowed=False, reservation_id="res-2")
    second = volume.collect_events()[-1].originator_version

    assert decide_extend(volume, first) == SKIP
    assert decide_extend(volume, second) == ExtendDecision(ExtendStep.GROW, 30, HOST)


# -- needs_create -----------------------------------------------------------------------------


def test_create_a_new_volume() -> None:
    volume = creating()
    before = state(volume)

    assert needs_create(volume) is True
    assert state(volume) == before


def test_no_create_for_a_missing_volume() -> None:
    assert needs_create(None) is False


def test_no_create_once_placed() -> None:
    assert needs_create(available()) is False


def test_no_create_after_a_failed_create() -> None:
    assert needs_create(errored_on_create()) is False


def test_no_create_after_the_volume_was_deleted() -> None:
    volume = creating()
    volume.request_delete()

    assert needs_create(volume) is False


def test_no_create_for_a_creating_volume_that_has_a_host() -> None:
    volume = in_state(available(), Status.CREATING)

    assert needs_create(volume) is False


# -- needs_delete -----------------------------------------------------------------------------


def test_delete_a_deleting_volume_from_its_host() -> None:
    volume = deleting()
    before = state(volume)

    assert needs_delete(volume) is True
    assert state(volume) == before


def test_no_delete_for_a_missing_volume() -> None:
    assert needs_delete(None) is False


def test_no_delete_once_deleted() -> None:
    volume = deleting()
    volume.complete_delete()

    assert needs_delete(volume) is False


def test_no_delete_after_a_failed_delete() -> None:
    volume = deleting()
    volume.fail_delete("backend exploded")

    assert needs_delete(volume) is False


def test_no_delete_for_a_never_placed_volume() -> None:
    volume = creating()
    volume.request_delete()

    assert needs_delete(volume) is False


def test_no_delete_for_a_deleting_volume_without_a_host() -> None:
    volume = in_state(deleting(), Status.DELETING, host=None)

    assert needs_delete(volume) is False


@pytest.mark.parametrize(
    "status", [s for s in Status if s is not Status.DELETING], ids=lambda s: s.value
)
def test_no_delete_unless_deleting(status: Status) -> None:
    assert needs_delete(in_state(available(), status)) is False
