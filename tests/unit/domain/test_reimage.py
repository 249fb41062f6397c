"""os-reimage (3.68, Cinder's ``volume/api.py`` ``reimage`` and the manager's outcome):
request_reimage's rules, the image checks, volume_image_metadata, and the saga's
complete_reimage / fail_reimage, each replayed from its events."""

from __future__ import annotations

from typing import Any

import pytest

from cinderblock.domain.errors import InvalidInputError, InvalidVolumeError, StaleCommandError
from cinderblock.domain.reimage import (
    ImageUnacceptableError,
    ReimageConflictError,
    check_image,
    volume_image_metadata,
)
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import GIB, IMAGE_ID, Story, image, recorded, state, story

pytestmark = pytest.mark.unit

INSTANCE = "11111111-1111-4111-8111-111111111111"


def requested(s: Story, **kwargs: Any) -> int:
    s.volume.request_reimage(image(), reimage_reserved=kwargs.get("reserved", False))
    (event,) = s.new_events()
    return int(event.originator_version)


def assert_replays(s: Story) -> None:
    s.new_events()
    assert state(s.rebuilt()) == state(s.volume)


def test_reimage_of_an_available_volume_starts_downloading() -> None:
    s = story()

    s.volume.request_reimage(image(), reimage_reserved=False)

    events = s.new_events()
    metadata = {
        "hw_disk_bus": "virtio",
        "image_id": IMAGE_ID,
        "image_name": "cirros",
        "container_format": "bare",
        "disk_format": "raw",
        "min_disk": "0",
        "min_ram": "0",
        "size": str(GIB),
    }
    assert recorded(events) == [
        (
            Volume.ReimageRequested,
            {"image_id": IMAGE_ID, "previous_status": "available", "image_metadata": metadata},
        )
    ]
    assert s.volume.status is Status.DOWNLOADING
    assert s.volume.previous_status is Status.AVAILABLE
    assert s.volume.pending_reimage == {
        "image_id": IMAGE_ID,
        "request_version": events[0].originator_version,
        "image_metadata": metadata,
    }
    assert_replays(s)


def test_completion_returns_to_the_previous_status_bootable_with_the_image_metadata() -> None:
    s = story()
    s.volume.set_image_metadata({"old": "value"})
    s.new_events()
    version = requested(s)

    s.volume.complete_reimage(version, "cd" * 32)

    [done] = s.new_events()
    assert isinstance(done, Volume.Reimaged)
    assert (done.status, done.checksum, done.image_id) == ("available", "cd" * 32, IMAGE_ID)
    assert s.volume.status is Status.AVAILABLE
    assert s.volume.bootable is True
    assert s.volume.image_metadata["image_id"] == IMAGE_ID
    assert "old" not in s.volume.image_metadata  # replaced, as Cinder deletes and re-creates
    assert s.volume.pending_reimage is None
    assert_replays(s)
    with pytest.raises(StaleCommandError):
        s.volume.complete_reimage(version, "cd" * 32)  # a redelivery finds nothing pending


def test_failure_leaves_the_volume_in_error() -> None:
    s = story()
    version = requested(s)

    s.volume.fail_reimage(version, "the image service said no")

    assert recorded(s.new_events()) == [
        (Volume.ReimageFailed, {"image_id": IMAGE_ID, "reason": "the image service said no"})
    ]
    assert (s.volume.status, s.volume.previous_status) == (Status.ERROR, Status.DOWNLOADING)
    assert s.volume.bootable is False
    assert_replays(s)
    with pytest.raises(StaleCommandError):
        s.volume.fail_reimage(version, "again")


def test_an_error_volume_can_be_reimaged_and_stays_error() -> None:
    """Cinder returns to ``previous_status``, which was ``error``."""
    s = story()
    first = requested(s)  # a failed reimage leaves it in error
    s.volume.fail_reimage(first, "boom")
    s.new_events()

    second = requested(s)
    s.volume.complete_reimage(second, "ef" * 32)

    assert s.volume.status is Status.ERROR
    assert_replays(s)


def test_a_reserved_volume_needs_reimage_reserved() -> None:
    s = story()
    s.volume.create_attachment("att-1", instance_uuid=INSTANCE, mode=None)
    s.new_events()

    with pytest.raises(InvalidVolumeError) as refused:
        s.volume.request_reimage(image(), reimage_reserved=False)
    assert refused.value.message == (
        f"Volume {s.volume.vid} status must be available or error, but current status is reserved."
    )
    version = requested(s, reserved=True)
    s.volume.complete_reimage(version, "00" * 32)
    assert s.volume.status is Status.RESERVED
    assert list(s.volume.attachments) == ["att-1"]
    assert_replays(s)


@pytest.mark.parametrize("reserved", [True, False])
def test_an_in_use_volume_is_refused(reserved: bool) -> None:
    s = story()
    s.volume.attach(
        "att-1", mountpoint="/dev/vda", mode="rw", instance_uuid=INSTANCE, host_name=None
    )
    s.new_events()

    with pytest.raises(InvalidVolumeError) as refused:
        s.volume.request_reimage(image(), reimage_reserved=reserved)
    statuses = "available or error or reserved" if reserved else "available or error"
    assert refused.value.message == (
        f"Volume {s.volume.vid} status must be {statuses}, but current status is in-use."
    )
    assert s.volume.collect_events() == []


def test_two_attachments_are_a_conflict_before_the_status() -> None:
    s = story(multiattach=True)
    for n in range(2):
        s.volume.attach(
            f"att-{n}", mountpoint="/dev/vdb", mode="rw", instance_uuid=f"i-{n}", host_name=None
        )
    s.new_events()

    with pytest.raises(ReimageConflictError, match="attached to more than one server"):
        s.volume.request_reimage(image(), reimage_reserved=True)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"status": "queued"}, InvalidInputError, f"Image {IMAGE_ID} is not active."),
        (
            {"size": 10 * GIB + 1},
            InvalidInputError,
            "Size of specified image 11GB is larger than volume size 10GB.",
        ),
        (
            {"min_disk": 20},
            InvalidInputError,
            "Volume size 10GB cannot be smaller than the image minDisk size 20GB.",
        ),
        (
            {"virtual_size": 12 * GIB},
            ImageUnacceptableError,
            f"Image {IMAGE_ID} is unacceptable: Image virtual size is 12GB and doesn't fit in "
            "a volume of size 10GB.",
        ),
    ],
)
def test_an_image_that_does_not_fit_is_refused(
    overrides: dict[str, Any], error: type[Exception], message: str
) -> None:
    s = story()

    with pytest.raises(error) as refused:
        s.volume.request_reimage(image(**overrides), reimage_reserved=False)

    assert refused.value.message == message  # type: ignore[attr-defined]
    assert s.volume.collect_events() == []
    assert s.volume.status is Status.AVAILABLE


def test_an_image_of_exactly_the_volume_size_fits() -> None:
    check_image(image(size=10 * GIB, virtual_size=10 * GIB, min_disk=10), 10)


def test_volume_image_metadata_keeps_properties_and_base_attributes_as_text() -> None:
    found = volume_image_metadata(image(name=None, checksum="aa", owner="p", tags=["x"]))
    assert found == {
        "hw_disk_bus": "virtio",
        "image_id": IMAGE_ID,
        "checksum": "aa",
        "container_format": "bare",
        "disk_format": "raw",
        "min_disk": "0",
        "min_ram": "0",
        "size": str(GIB),
    }
