"""The upload saga: the volume's bytes go to the image service. Ends in Uploaded, or in
UploadFailed with the queued image deleted (Cinder does the same)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any
from uuid import UUID

from cinderblock.domain.pending import Kind
from cinderblock.domain.sagas.images import upload_to_give_up, upload_to_run
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
        run = upload_to_run(volume, env.version)
        if volume is None or run is None:
            return
        path = self.driver.volume_path(volume.vid, run.host)
        try:
            checksum = await self.images.upload(run.image_id, path, size=volume.size_gb * GIB)
        except ImageServiceError as err:
            if err.retryable:
                raise
            await self._fail(env, run.image_id, err.message)
            return
        version = env.version
        await self.volumes.settle(
            volume.vid,
            Kind.UPLOAD,
            version,
            lambda v, _: v.complete_upload(version, checksum),
            succeeded=True,
            meta=_meta(env),
        )

    async def give_up(self, env: ReceivedEnvelope) -> None:
        volume = await self.volumes.store.load(UUID(env.aggregate_id), Volume)
        image_id = upload_to_give_up(volume, env.version)
        if image_id is not None:
            await self._fail(env, image_id, "gave up after repeated failures")

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
        await self.volumes.settle(
            env.aggregate_id,
            Kind.UPLOAD,
            version,
            lambda v, _: v.fail_upload(version, reason),
            succeeded=False,
            meta=_meta(env),
        )
