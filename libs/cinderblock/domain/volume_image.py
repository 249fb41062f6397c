"""A volume created from an image (``imageRef`` / ``image_id``): Cinder's rules for such a
create (``check_image_metadata`` in its ``ExtractVolumeRequestTask``) and its two events.

``ImageSourceSet`` is appended in the create's own save after ``Created`` (as ``SourceSet``
is), so the create saga sees the image when it reacts to ``Created``; ``ImageWritten`` is
appended by the saga with ``CreateCompleted`` once the image's bytes are on the volume: the
volume becomes bootable and shows the image's metadata (Cinder's
``_handle_bootable_volume_glance_meta``). A mixin of Volume with explicit events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain.errors import InvalidInputError
from cinderblock.domain.reimage import check_image, volume_image_metadata
from cinderblock.domain.status import Status

INVALID_IMAGE = "Invalid image identifier or unable to access requested image."


def image_uuid_from_ref(image_ref: str) -> str:
    """Cinder's ``_image_uuid_from_ref``: a Nova-made ``imageRef`` (a URL) is cut down to
    its last segment; an empty one names nothing (400)."""
    image_uuid = image_ref.split("/").pop()
    if not image_uuid:
        raise InvalidInputError(INVALID_IMAGE)
    return image_uuid


class VolumeImage:
    source_image_id: str | None = None
    source_image_metadata: dict[str, str] | None = None
    status: Status
    size_gb: int

    class ImageSourceSet(Aggregate.Event):
        image_id: str
        image_metadata: dict[str, str]  # what the volume shows once the image is written

        def apply(self, volume: Any) -> None:
            volume.source_image_id = self.image_id
            volume.source_image_metadata = dict(self.image_metadata)

    class ImageWritten(Aggregate.Event):
        image_id: str
        checksum: str  # sha256 of the image's bytes as written
        image_metadata: dict[str, str]

        def apply(self, volume: Any) -> None:
            volume.bootable = True
            volume.image_metadata = dict(self.image_metadata)

    @property
    def from_image(self) -> bool:
        return self.source_image_id is not None

    def set_image_source(self, image: Mapping[str, Any]) -> None:
        """At create, in the append that creates the volume: the image must be active and
        fit the volume's size (its size rounded up to GiB, ``min_disk``, its virtual size:
        400, nothing recorded)."""
        check_image(image, self.size_gb)
        self.trigger_event(  # type: ignore[attr-defined]
            self.ImageSourceSet,
            image_id=str(image["id"]),
            image_metadata=volume_image_metadata(image),
        )

    def complete_create_from_image(self, host: str, checksum: str) -> bool:
        """The image is on the new volume: bootable, the image's metadata, then
        ``CreateCompleted``. False when the create's outcome is already recorded."""
        if self.status != Status.CREATING or self.source_image_id is None:
            return False
        self.trigger_event(  # type: ignore[attr-defined]
            self.ImageWritten,
            image_id=self.source_image_id,
            checksum=checksum,
            image_metadata=dict(self.source_image_metadata or {}),
        )
        completed: bool = self.complete_create(host)  # type: ignore[attr-defined]
        return completed
