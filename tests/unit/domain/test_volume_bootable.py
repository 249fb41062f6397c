"""os-set_bootable (spec §3.15): any status except ``maintenance``."""

from __future__ import annotations

import pytest

from cinderblock.domain.errors import InvalidVolumeError
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import available, creating, extending, in_state, recorded, state

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("bootable", [True, False])
def test_set_bootable_records_the_flag(bootable: bool) -> None:
    volume = available(bootable=not bootable)

    volume.set_bootable(bootable)

    events = volume.collect_events()
    assert recorded(events) == [(Volume.BootableSet, {"bootable": bootable})]
    assert volume.bootable is bootable


def test_set_bootable_leaves_everything_else_alone() -> None:
    volume = available()
    before = state(volume)

    volume.set_bootable(True)

    after = state(volume)
    assert after.pop("bootable") is True
    assert after.pop("_version") == before.pop("_version") + 1
    after.pop("_modified_on")
    before.pop("_modified_on")
    before.pop("bootable")
    assert after == before


@pytest.mark.parametrize(
    "status", [s for s in Status if s is not Status.MAINTENANCE], ids=lambda s: s.value
)
def test_set_bootable_is_allowed_in_any_other_status(status: Status) -> None:
    volume = in_state(available(), status)

    volume.set_bootable(True)

    assert recorded(volume.collect_events()) == [(Volume.BootableSet, {"bootable": True})]
    assert volume.bootable is True
    assert volume.status is status


def test_set_bootable_while_creating() -> None:
    volume = creating()

    volume.set_bootable(True)

    assert [type(e) for e in volume.collect_events()] == [Volume.BootableSet]
    assert volume.status is Status.CREATING


def test_set_bootable_while_extending_keeps_the_extend_pending() -> None:
    volume, version = extending()

    volume.set_bootable(True)

    assert [type(e) for e in volume.collect_events()] == [Volume.BootableSet]
    assert volume.complete_extend(version) == "res-1"


def test_set_bootable_in_maintenance_is_rejected() -> None:
    volume = in_state(available(), Status.MAINTENANCE)
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.set_bootable(True)

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == "Volume status is maintenance."
    assert raised.value.code == "invalid_volume"
    assert volume.collect_events() == []
    assert state(volume) == before
    assert volume.bootable is False
