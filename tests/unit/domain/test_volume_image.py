"""A volume created from an image (Cinder's create with ``imageRef``): the image is checked
and recorded in the create's append (ImageSourceSet); the create saga's outcome is
ImageWritten with CreateCompleted (bootable, the image's metadata) or CreateFailed (error,
nothing of the image), each replayed from its events."""

from __future__ import annotations

import pytest

from cinderblock.domain.errors import InvalidInputError
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_image import image_uuid_from_ref
from tests.unit.domain.given import (
    GIB,
    HOST,
    IMAGE_ID,
    VOLUME_ID,
    Story,
    image,
    recorded,
    state,
    volume_fields,
)

pytestmark = pytest.mark.unit

METADATA = {
    "hw_disk_bus": "virtio",
    "image_id": IMAGE_ID,
    "image_name": "cirros",
    "container_format": "bare",
    "disk_format": "raw",
    "min_disk": "0",
    "min_ram": "0",
    "size": str(GIB),
}


def from_image(**overrides: object) -> Story:
    volume = Volume.create(VOLUME_ID, **volume_fields(size_gb=1))
    volume.set_image_source(image(**overrides))
    return Story(volume, [])


def test_the_image_is_recorded_in_the_create_append() -> None:
    s = from_image()

    events = s.new_events()

    assert [type(e) for e in events] == [Volume.Created, Volume.ImageSourceSet]
    assert recorded(events[1:]) == [
        (Volume.ImageSourceSet, {"image_id": IMAGE_ID, "image_metadata": METADATA})
    ]
    assert (s.volume.status, s.volume.bootable, s.volume.image_metadata) == (
        Status.CREATING,
        False,
        {},
    )
    assert s.volume.from_image
    assert not s.volume.from_source
    assert state(s.rebuilt()) == state(s.volume)


def test_completion_makes_it_bootable_with_the_image_metadata() -> None:
    s = from_image()
    s.new_events()

    assert s.volume.complete_create_from_image(HOST, "cd" * 32)

    events = s.new_events()
    assert recorded(events) == [
        (
            Volume.ImageWritten,
            {"image_id": IMAGE_ID, "checksum": "cd" * 32, "image_metadata": METADATA},
        ),
        (Volume.CreateCompleted, {"host": HOST}),
    ]
    assert (s.volume.status, s.volume.bootable, s.volume.image_metadata, s.volume.host) == (
        Status.AVAILABLE,
        True,
        METADATA,
        HOST,
    )
    assert state(s.rebuilt()) == state(s.volume)
    assert not s.volume.complete_create_from_image(HOST, "cd" * 32)  # redelivery: no-op
    assert s.new_events() == []


def test_a_failed_write_is_error_without_the_image() -> None:
    s = from_image()
    s.new_events()

    assert s.volume.fail_create("download failed")

    s.new_events()
    assert (s.volume.status, s.volume.bootable, s.volume.image_metadata) == (
        Status.ERROR,
        False,
        {},
    )
    assert not s.volume.complete_create_from_image(HOST, "cd" * 32)
    assert state(s.rebuilt()) == state(s.volume)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"status": "queued"}, f"Image {IMAGE_ID} is not active."),
        ({"size": GIB + 1}, "Size of specified image 2GB is larger than volume size 1GB."),
        ({"min_disk": 2}, "Volume size 1GB cannot be smaller than the image minDisk size 2GB."),
    ],
)
def test_an_image_that_does_not_fit_records_nothing(
    overrides: dict[str, object], message: str
) -> None:
    volume = Volume.create(VOLUME_ID, **volume_fields(size_gb=1))
    volume.collect_events()

    with pytest.raises(InvalidInputError, match=message):
        volume.set_image_source(image(**overrides))

    assert volume.collect_events() == []


def test_a_nova_made_image_ref_is_cut_to_its_id() -> None:
    assert image_uuid_from_ref(f"http://glance:9292/v2/images/{IMAGE_ID}") == IMAGE_ID
    assert image_uuid_from_ref(IMAGE_ID) == IMAGE_ID
    with pytest.raises(InvalidInputError):
        image_uuid_from_ref("http://glance/images/")
