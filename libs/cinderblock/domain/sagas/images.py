"""What the upload (os-volume_upload_image) and reimage (os-reimage) sagas do next,
decided from the volume. Pure; the runners in the sagas service do the I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cinderblock.domain.pending import Kind
from cinderblock.domain.volume import Volume

NOT_PLACED = "the volume is on no backend"


@dataclass(frozen=True)
class UploadRun:
    image_id: str
    host: str


def upload_to_run(volume: Volume | None, request_version: int) -> UploadRun | None:
    """On ``UploadRequested`` at ``request_version``: the image to fill from the volume on
    its host, or None when the upload is settled already (or the volume has no host).

    Compensation: a permanent image-service error (or giving up) → the queued image is
    deleted and ``UploadFailed`` recorded (the volume back by its attachments)."""
    if volume is None or volume.host is None:
        return None
    pending = volume.pending_at(Kind.UPLOAD, request_version)
    return UploadRun(pending.payload.image_id, volume.host) if pending is not None else None


def upload_to_give_up(volume: Volume | None, request_version: int) -> str | None:
    """After repeated failures: the image of the upload requested at ``request_version``
    to delete and fail, or None when it is settled already."""
    pending = volume.pending_at(Kind.UPLOAD, request_version) if volume is not None else None
    return pending.payload.image_id if pending is not None else None


class ReimageStep(Enum):
    SKIP = "skip"  # settled already (redelivery)
    WRITE = "write"  # driver.reimage_volume on ``host`` from the image, then Reimaged
    FAIL = "fail"  # ReimageFailed with ``reason`` (no backend holds the volume)


@dataclass(frozen=True)
class ReimageDecision:
    step: ReimageStep
    image_id: str = ""
    host: str | None = None
    reason: str | None = None


def decide_reimage(volume: Volume | None, request_version: int) -> ReimageDecision:
    """On ``ReimageRequested`` at ``request_version``.

    Compensation: a permanent image or driver error → ``ReimageFailed`` (``error``, the
    volume's bytes as they were: the driver installs a new image only when complete)."""
    pending = volume.pending_at(Kind.REIMAGE, request_version) if volume is not None else None
    if volume is None or pending is None:
        return ReimageDecision(ReimageStep.SKIP)
    image_id = pending.payload.image_id
    if volume.host is None:  # an error volume never placed
        return ReimageDecision(ReimageStep.FAIL, image_id, reason=NOT_PLACED)
    return ReimageDecision(ReimageStep.WRITE, image_id, host=volume.host)
