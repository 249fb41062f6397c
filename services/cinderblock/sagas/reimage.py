"""The reimage saga (os-reimage): the image service writes the image's bytes into a new
file the driver renames over the volume. Ends in Reimaged, or in ReimageFailed (``error``,
the volume's bytes as they were) as Cinder's manager does."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from uuid import UUID

from cinderblock.domain.pending import Kind
from cinderblock.domain.sagas.images import ReimageStep, decide_reimage
from cinderblock.domain.volume import Volume
from cinderblock.drivers.base import BackendError, CapacityError, VolumeDriver
from cinderblock.images.port import ImageService, ImageServiceError
from cinderblock.sagas.meta import saga_meta
from cinderblock.store.volumes import Volumes
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)


def _meta(env: ReceivedEnvelope) -> dict[str, Any]:
    return saga_meta(env, "reimage")


class ReimageSaga:
    def __init__(self, volumes: Volumes, driver: VolumeDriver, images: ImageService) -> None:
        self.volumes = volumes
        self.driver = driver
        self.images = images

    async def when_reimage_requested_write(self, env: ReceivedEnvelope) -> None:
        """Idempotent: a redelivery after the outcome was recorded finds nothing pending;
        one before it writes the same bytes again (the step key names the request).
        Retryable image-service errors are raised (redelivered); the last delivery gives up
        through ``give_up``."""
        volume = await self.volumes.store.load(UUID(env.aggregate_id), Volume)
        decision = decide_reimage(volume, env.version)
        if decision.step is ReimageStep.SKIP or volume is None:
            return
        if decision.step is ReimageStep.FAIL:
            await self._fail(env, decision.reason or "")
            return
        image_id = decision.image_id

        async def write(target: Path, start: int, limit: int) -> str:
            return await self.images.download(image_id, target, start=start, limit=limit)

        try:
            checksum = await self.driver.reimage_volume(
                volume.vid, decision.host or "", write=write, step_key=env.id
            )
        except ImageServiceError as err:
            if err.retryable:
                raise
            await self._fail(env, str(err))
            return
        except (CapacityError, BackendError) as err:
            await self._fail(env, err.reason)
            return
        version = env.version
        await self.volumes.settle(
            volume.vid,
            Kind.REIMAGE,
            version,
            lambda v, _: v.complete_reimage(version, checksum),
            succeeded=True,
            meta=_meta(env),
        )

    async def give_up(self, env: ReceivedEnvelope) -> None:
        await self._fail(env, "gave up after repeated failures")

    async def _fail(self, env: ReceivedEnvelope, reason: str) -> None:
        log.error(
            "reimage failed: %s",
            reason,
            extra={
                "volume_id": env.aggregate_id,
                "action": "os-reimage",
                "request_id": env.request_id,
            },
        )
        version = env.version
        await self.volumes.settle(
            env.aggregate_id,
            Kind.REIMAGE,
            version,
            lambda v, _: v.fail_reimage(version, reason),
            succeeded=False,
            meta=_meta(env),
        )
