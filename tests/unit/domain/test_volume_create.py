"""Volume create and the create saga's outcomes: complete_create / fail_create."""

from __future__ import annotations

import pytest

from cinderblock.domain.errors import InvalidInputError
from cinderblock.domain.status import AttachStatus, Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import (
    HOST,
    VOLUME_ID,
    available,
    creating,
    errored_on_create,
    recorded,
    state,
    volume_fields,
)

pytestmark = pytest.mark.unit

# -- create -----------------------------------------------------------------------------------


def test_create_records_created_with_every_field() -> None:
    volume = Volume.create(VOLUME_ID, **volume_fields())

    events = volume.collect_events()

    assert recorded(events) == [
        (
            Volume.Created,
            {
                "project_id": "project-a",
                "user_id": "user-a",
                "name": "vol-1",
                "description": "a test volume",
                "size_gb": 10,
                "availability_zone": "nova",
                "volume_type_id": "type-id-lvm",
                "volume_type_name": "lvm",
                "metadata": {"purpose": "test"},
                "bootable": False,
                "multiattach": False,
            },
        )
    ]
    assert events[0].originator_id == VOLUME_ID
    assert events[0].originator_version == 1
    assert events[0].originator_topic == "cinderblock.domain.volume:Volume"


def test_created_volume_is_creating_and_unplaced() -> None:
    volume = Volume.create(
        VOLUME_ID, **volume_fields(name=None, description=None, bootable=True, multiattach=True)
    )

    assert volume.id == VOLUME_ID
    assert volume.vid == str(VOLUME_ID)
    assert volume.version == 1
    assert volume.status is Status.CREATING
    assert volume.previous_status is None
    assert volume.attach_status is AttachStatus.DETACHED
    assert volume.migration_status is None
    assert volume.host is None
    assert volume.attachment_ids == []
    assert volume.pending_extend is None
    assert volume.is_deleted is False
    assert (volume.name, volume.description) == (None, None)
    assert (volume.bootable, volume.multiattach) == (True, True)
    assert volume.size_gb == 10
    assert (volume.volume_type_id, volume.volume_type_name) == ("type-id-lvm", "lvm")


def test_created_volume_keeps_its_own_copy_of_the_metadata() -> None:
    metadata = {"purpose": "test"}
    volume = Volume.create(VOLUME_ID, **volume_fields(metadata=metadata))

    metadata["later"] = "change"

    assert volume.metadata == {"purpose": "test"}


def test_smallest_volume_is_one_gigabyte() -> None:
    volume = Volume.create(VOLUME_ID, **volume_fields(size_gb=1))

    assert volume.size_gb == 1
    assert [type(e) for e in volume.collect_events()] == [Volume.Created]


@pytest.mark.parametrize("size_gb", [0, -1, -100])
def test_create_rejects_a_size_below_one(size_gb: int) -> None:
    with pytest.raises(InvalidInputError) as raised:
        Volume.create(VOLUME_ID, **volume_fields(size_gb=size_gb))

    assert raised.value.message == "Volume size must be greater than 0."
    assert str(raised.value) == "Volume size must be greater than 0."
    assert raised.value.code == "invalid_input"


# -- complete_create --------------------------------------------------------------------------


def test_complete_create_records_the_host_and_makes_the_volume_available() -> None:
    volume = creating()

    assert volume.complete_create(HOST) is True

    events = volume.collect_events()
    assert recorded(events) == [(Volume.CreateCompleted, {"host": HOST})]
    assert events[0].originator_version == 2
    assert volume.status is Status.AVAILABLE
    assert volume.host == HOST
    assert volume.version == 2


def test_complete_create_twice_records_nothing_the_second_time() -> None:
    volume = available()
    before = state(volume)

    assert volume.complete_create("node2@file-b#pool0") is False

    assert volume.collect_events() == []
    assert state(volume) == before
    assert volume.host == HOST


def test_complete_create_after_a_failed_create_records_nothing() -> None:
    volume = errored_on_create()
    before = state(volume)

    assert volume.complete_create(HOST) is False

    assert volume.collect_events() == []
    assert state(volume) == before
    assert volume.status is Status.ERROR


def test_complete_create_of_a_volume_deleted_while_creating_records_nothing() -> None:
    volume = creating()
    volume.request_delete()
    volume.collect_events()

    assert volume.complete_create(HOST) is False

    assert volume.collect_events() == []
    assert volume.status is Status.DELETED
    assert volume.host is None


# -- fail_create ------------------------------------------------------------------------------


def test_fail_create_records_the_reason_and_sets_error() -> None:
    volume = creating()

    assert volume.fail_create("no valid backend") is True

    assert recorded(volume.collect_events()) == [
        (Volume.CreateFailed, {"reason": "no valid backend"})
    ]
    assert volume.status is Status.ERROR
    assert volume.host is None


def test_fail_create_twice_records_nothing_the_second_time() -> None:
    volume = errored_on_create()
    before = state(volume)

    assert volume.fail_create("again") is False

    assert volume.collect_events() == []
    assert state(volume) == before


def test_fail_create_after_completion_records_nothing() -> None:
    volume = available()
    before = state(volume)

    assert volume.fail_create("late failure") is False

    assert volume.collect_events() == []
    assert state(volume) == before
    assert volume.status is Status.AVAILABLE
