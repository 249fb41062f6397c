"""os-reimage (3.68): an image's bytes are written over the volume (Nova's rebuild of a
volume-backed server). A mixin of Volume with explicit events; the reimage saga writes the
data and ends in Reimaged (the status it had before, bootable, the image's metadata) or
ReimageFailed (``error``), as Cinder's ``volume/api.py`` and ``volume/manager.py`` do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain.errors import InvalidInputError, InvalidVolumeError, VolumeError
from cinderblock.domain.pending import Kind, PendingOperation, ReimagePayload
from cinderblock.domain.status import Status

GIB = 2**30
# The image attributes Cinder keeps as the volume's image metadata (volume_utils).
_IMAGE_ATTRIBUTES = ("checksum", "container_format", "disk_format", "min_disk", "min_ram", "size")
# Glance v2 attributes that are not free-form properties (those become metadata too).
_CORE = frozenset(
    {
        *_IMAGE_ATTRIBUTES,
        "created_at",
        "direct_url",
        "file",
        "id",
        "locations",
        "name",
        "os_hash_algo",
        "os_hash_value",
        "os_hidden",
        "owner",
        "protected",
        "schema",
        "self",
        "status",
        "tags",
        "updated_at",
        "virtual_size",
        "visibility",
    }
)


class ReimageConflictError(VolumeError):
    """Raised when the volume is attached to more than one server (Cinder's 409)."""

    code = "reimage_conflict"


class ImageUnacceptableError(VolumeError):
    """Raised when the image's virtual size does not fit the volume (Cinder's
    ImageUnacceptable, 400)."""

    code = "image_unacceptable"


def _gib(size: int) -> int:
    return (size + GIB - 1) // GIB


def check_image(image: Mapping[str, Any], size_gb: int) -> None:
    """Cinder's ``check_image_metadata``: the image is active, its size (rounded up to
    GiB) and ``min_disk`` fit the volume, and so does its virtual size."""
    image_id = image.get("id")
    if image.get("status") != "active":
        raise InvalidInputError(f"Image {image_id} is not active.")
    image_gb = _gib(int(image.get("size") or 0))
    if image_gb > size_gb:
        raise InvalidInputError(
            f"Size of specified image {image_gb}GB is larger than volume size {size_gb}GB."
        )
    min_disk = int(image.get("min_disk") or 0)
    if size_gb < min_disk:
        raise InvalidInputError(
            f"Volume size {size_gb}GB cannot be smaller than the image minDisk size {min_disk}GB."
        )
    virtual = image.get("virtual_size")
    if virtual and _gib(int(virtual)) > size_gb:
        raise ImageUnacceptableError(
            f"Image {image_id} is unacceptable: Image virtual size is {_gib(int(virtual))}GB "
            f"and doesn't fit in a volume of size {size_gb}GB."
        )


def volume_image_metadata(image: Mapping[str, Any]) -> dict[str, str]:
    """What the volume shows as its image metadata after a reimage (Cinder's
    ``get_volume_image_metadata``): the image's properties, then its id, name and the
    base attributes; values as strings (Cinder stores them as text)."""
    found = {str(k): str(v) for k, v in image.items() if k not in _CORE and v is not None}
    found["image_id"] = str(image["id"])
    if image.get("name"):
        found["image_name"] = str(image["name"])
    for key in _IMAGE_ATTRIBUTES:
        if image.get(key) is not None:
            found[key] = str(image[key])
    return found


class Reimage:
    status: Status
    attachments: dict[str, dict[str, Any]]
    vid: str
    size_gb: int

    class ReimageRequested(Aggregate.Event):
        image_id: str
        previous_status: str
        image_metadata: dict[str, str]  # what the volume shows once the image is written

        def apply(self, volume: Any) -> None:
            volume.previous_status = Status(self.previous_status)
            volume.status = Status.DOWNLOADING
            volume._begin(Kind.REIMAGE, ReimagePayload(self.image_id, dict(self.image_metadata)))

    class Reimaged(Aggregate.Event):
        image_id: str
        checksum: str  # sha256 of the image's bytes as written
        status: str
        image_metadata: dict[str, str]

        def apply(self, volume: Any) -> None:
            volume.status = Status(self.status)
            volume.bootable = True
            volume.image_metadata = dict(self.image_metadata)
            volume._end(Kind.REIMAGE)

    class ReimageFailed(Aggregate.Event):
        image_id: str
        reason: str

        def apply(self, volume: Any) -> None:
            volume.previous_status = volume.status
            volume.status = Status.ERROR
            volume._end(Kind.REIMAGE)

    def request_reimage(self, image: Mapping[str, Any], *, reimage_reserved: bool) -> None:
        """Cinder's ``reimage`` after its policy check: at most one attachment (409), the
        status ``available`` or ``error`` (also ``reserved`` with ``reimage_reserved``)
        → ``downloading``; the image must be active and fit (400, nothing recorded)."""
        if len(self.attachments) > 1:
            raise ReimageConflictError(
                "Cannot re-image a volume which is attached to more than one server."
            )
        allowed = [Status.AVAILABLE, Status.ERROR]
        if reimage_reserved:
            allowed.append(Status.RESERVED)
        if self.status not in allowed:
            raise InvalidVolumeError(
                f"Volume {self.vid} status must be {' or '.join(allowed)}, but current "
                f"status is {self.status}."
            )
        check_image(image, self.size_gb)
        self.trigger_event(  # type: ignore[attr-defined]
            self.ReimageRequested,
            image_id=str(image["id"]),
            previous_status=self.status.value,
            image_metadata=volume_image_metadata(image),
        )

    def reimage_pending_for(self, request_version: int) -> PendingOperation[ReimagePayload]:
        return self.require_pending(Kind.REIMAGE, request_version)  # type: ignore[attr-defined,no-any-return]

    def complete_reimage(self, request_version: int, checksum: str) -> None:
        """The image is on the volume: back to the status it had before (Cinder)."""
        pending = self.reimage_pending_for(request_version)
        previous = getattr(self, "previous_status", None) or Status.AVAILABLE
        self.trigger_event(  # type: ignore[attr-defined]
            self.Reimaged,
            image_id=pending.payload.image_id,
            checksum=checksum,
            status=Status(previous).value,
            image_metadata=dict(pending.payload.image_metadata),
        )

    def fail_reimage(self, request_version: int, reason: str) -> None:
        """Compensation: ``error`` (Cinder's manager), the volume's data as the failed
        write left it (the driver installs a new image only when it is complete)."""
        pending = self.reimage_pending_for(request_version)
        self.trigger_event(  # type: ignore[attr-defined]
            self.ReimageFailed, image_id=pending.payload.image_id, reason=reason
        )
