"""The image service port: what `os-volume_upload_image` needs from an image service.

Two adapters implement it: `cinderblock.images.local.LocalImageStore` (files on disk, the
embedded default) and `cinderblock.images.glance.GlanceImageService` (OpenStack Glance v2).
Both answer `get` with a Glance-v2-shaped image record, so callers see one shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

QUEUED = "queued"
SAVING = "saving"
ACTIVE = "active"

CORE_ATTRIBUTES = frozenset(
    {
        "checksum",
        "container_format",
        "created_at",
        "direct_url",
        "disk_format",
        "file",
        "id",
        "locations",
        "min_disk",
        "min_ram",
        "name",
        "os_hash_algo",
        "os_hash_value",
        "os_hidden",
        "owner",
        "protected",
        "schema",
        "self",
        "size",
        "status",
        "tags",
        "updated_at",
        "virtual_size",
        "visibility",
    }
)
"""Glance v2 image attributes that are not free-form properties; a property may not use
one of these names (Glance answers 400/403 when one is sent as a string property)."""

_IMAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def check_image_id(image_id: str) -> None:
    """Raise ValueError unless `image_id` is safe as a URL segment and a file name."""
    if not _IMAGE_ID.fullmatch(image_id):
        raise ValueError(f"image id {image_id!r} is not a safe name")


@dataclass(frozen=True)
class ImageSpec:
    """The image record to register before its data is uploaded.

    `properties` become extra top-level attributes of the image (Glance's "additional
    properties"), e.g. Cinder's volume-derived metadata.

    Raises:
        ValueError: the id is not a safe name, `min_disk` is negative, or a property
            name is one of `CORE_ATTRIBUTES`.
    """

    image_id: str
    name: str
    disk_format: str
    container_format: str
    visibility: str
    protected: bool
    min_disk: int
    properties: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_image_id(self.image_id)
        if self.min_disk < 0:
            raise ValueError(f"min_disk must not be negative, got {self.min_disk}")
        clashes = sorted(CORE_ATTRIBUTES & self.properties.keys())
        if clashes:
            raise ValueError(f"properties may not use core image attributes: {clashes}")


class ImageServiceError(Exception):
    """An image service call failed.

    Raised by every `ImageService` method when the service refused the call or could
    not be reached. `retryable` says whether the same call may succeed later (a 5xx,
    a timeout, a lost connection, an upload already in progress) or never will as it
    stands (400, 401, 403, 404, 409 with other content, 413, a bad source file).
    `status` is the HTTP status the service answered, when there was one (the local
    store uses the status Glance would have answered).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        operation: str,
        image_id: str,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.operation = operation
        self.image_id = image_id
        self.status = status

    def __str__(self) -> str:
        code = f" ({self.status})" if self.status is not None else ""
        kind = "retryable" if self.retryable else "permanent"
        return f"{self.operation} image {self.image_id}{code}, {kind}: {self.message}"


@runtime_checkable
class ImageService(Protocol):
    """Where a volume's bytes go when it is uploaded to an image."""

    async def create(self, spec: ImageSpec, *, request_id: str | None) -> str:
        """Register a queued image with `spec.image_id` and return its id.

        Idempotent: creating an image that already exists with the same id, name,
        disk format and container format returns its id.
        """
        ...

    async def upload(self, image_id: str, source: Path, *, size: int) -> str:
        """Stream the first `size` bytes of `source` (holes read as zeros) into the
        queued image and return the hex checksum the service reports (sha256 when
        available, else Glance's md5 `checksum`). The file is read in chunks, never
        whole. Uploading the same bytes to an image that is already active is a no-op
        that returns the same checksum."""
        ...

    async def get(self, image_id: str) -> dict[str, Any] | None:
        """The image record (Glance v2 shape: `id`, `status`, `size`, `checksum`,
        `os_hash_algo`, `os_hash_value`, …, properties top-level), or None."""
        ...

    async def download(self, image_id: str, target: Path, *, start: int, limit: int) -> str:
        """Write the active image's bytes into the existing file `target` from offset
        `start` (all-zero chunks are not written, so `target` keeps its holes) and return
        their sha256 (hex), after checking them against what the service recorded.
        Permanent errors: no such image, not active, more than `limit` bytes, other data
        than recorded; retryable: the service or the file system failed meanwhile."""
        ...

    async def delete(self, image_id: str) -> None:
        """Delete the image; deleting a missing image succeeds."""
        ...
