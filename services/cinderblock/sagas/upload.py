"""The upload saga: the volume's bytes go to the image service. Ends in Uploaded, or in
UploadFailed with the queued image deleted (Cinder does the same)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any
from uuid import UUID

from cinderblock.domain.volume import Volume
from cinderblock.drivers.base import VolumeDriver
from cinderblock.images.port import ImageService, ImageServiceError
from cinderblock.sagas.meta import saga_meta
from cinderblock.store.volumes import Volumes
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)
GIB = 2**30


def _meta(env: ReceivedEnvelope) -> dict[str, Any]:
    return saga_meta(env, "upload")


class UploadSaga:
    def __init__(self, volumes: Volumes, driver: VolumeDriver, images: ImageService) -> None:
        self.volumes = volumes
        self.driver = driver
        self.images = images

    async def when_upload_requested_copy(self, env: ReceivedEnvelope) -> None:
        """Retryable image-service errors are raised (the message is redelivered); the
        last delivery gives up through ``give_up``."""
        volume = await self.volumes.store.load(UUID(env.aggregate_id), Volume)
        pending = volume.pending_upload if volume is not None else None
        if volume is None or volume.host is None or pending is None:
            return
        if pending["request_version"] != env.version:
            return
        image_id = pending["image_id"]
        path = self.driver.volume_path(volume.vid, volume.host)
        try:
            checksum = await self.images.upload(image_id, path, size=volume.size_gb * GIB)
        except ImageServiceError as err:
            if err.retryable:
                raise
            await self._fail(env, image_id, err.message)
            return
        version = env.version
        await self.volumes.settle_saga_step(
            volume.vid, lambda v: v.complete_upload(version, checksum), meta=_meta(env)
        )

    async def give_up(self, env: ReceivedEnvelope) -> None:
        volume = await self.volumes.store.load(UUID(env.aggregate_id), Volume)
        pending = volume.pending_upload if volume is not None else None
        if pending is not None:
            await self._fail(env, pending["image_id"], "gave up after repeated failures")

    async def _fail(self, env: ReceivedEnvelope, image_id: str, reason: str) -> None:
        log.error(
            "upload failed: %s",
            reason,
            extra={
                "volume_id": env.aggregate_id,
                "action": "os-volume_upload_image",
                "request_id": env.request_id,
            },
        )
        with contextlib.suppress(ImageServiceError):
            await self.images.delete(image_id)
        version = env.version
        await self.volumes.settle_saga_step(
            env.aggregate_id, lambda v: v.fail_upload(version, reason), meta=_meta(env)
        )
