"""The create saga for a volume with a source (a snapshot, or a volume to clone): the new
volume goes to its source's pool, as Cinder schedules it to the source's backend, and is
made from the source's bytes there. When that pool does not suit the volume's type (another
``volume_backend_name``, or no multiattach), the create fails like any other: ``error``,
the quota kept until the volume is deleted (Cinder). A source gone meanwhile (a snapshot
deleted after the API accepted the create) fails it the same way (the driver finds no
file).

A volume made from an image is created like any other, then the image service's bytes are
written into it by the reimage driver step (a sparse temp copy of the volume's size, renamed
over it once complete)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cinderblock.domain.placement import Pool
from cinderblock.domain.volume import Volume
from cinderblock.drivers.base import CapacityError, VolumeDriver
from cinderblock.images.port import ImageService, ImageServiceError
from cinderblock.sagas.reencrypt import encryption_header


def source_pool(volume: Volume, suitable: Sequence[Pool]) -> str:
    """The source's pool, when it suits the volume's type; else CapacityError."""
    location = volume.source_host or ""
    if not any(pool.location == location for pool in suitable):
        raise CapacityError(
            "create",
            volume.vid,
            f"No valid backend was found: the source's pool {location} does not suit "
            f"volume type {volume.volume_type_name}",
        )
    return location


async def create_from_source(
    driver: VolumeDriver, volume: Volume, location: str, *, step_key: str
) -> str:
    """Copy the source into the new volume at ``location``; return its host."""
    header = encryption_header(volume)
    if volume.source_snapshot_id is not None:
        return await driver.create_volume_from_snapshot(
            volume.vid,
            volume.source_snapshot_id,
            volume.size_gb,
            location=location,
            step_key=step_key,
            header=header,
        )
    return await driver.create_cloned_volume(
        volume.vid,
        volume.source_volid or "",
        volume.size_gb,
        location=location,
        step_key=step_key,
        header=header,
    )


async def write_image(
    driver: VolumeDriver, images: ImageService | None, volume: Volume, host: str, *, step_key: str
) -> str:
    """Write the volume's source image into it at ``host``; return the bytes' sha256.
    Doing it again writes the same bytes again. Raises ImageServiceError (retryable or
    not), CapacityError or BackendError.

    Compensation: the caller removes the volume's file and fails the create (``error``)."""
    image_id = volume.source_image_id or ""
    if images is None:
        raise ImageServiceError(
            "no image service", retryable=False, operation="download", image_id=image_id
        )

    async def write(target: Path, start: int, limit: int) -> str:
        return await images.download(image_id, target, start=start, limit=limit)

    return await driver.reimage_volume(volume.vid, host, write=write, step_key=step_key)
