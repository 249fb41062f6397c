"""Which events the sagas react to, and what each reaction does (I/O around the pure
decisions of cinderblock.domain.sagas)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from cinderblock.domain.placement import choose_pool, suitable
from cinderblock.domain.sagas.extend import NO_VALID_BACKEND, ExtendStep, decide_extend
from cinderblock.domain.sagas.lifecycle import (
    abandoned_during_create,
    image_write_to_undo,
    needs_create,
    needs_unmanage,
)
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_type import VolumeType
from cinderblock.drivers.base import BackendError, CapacityError, VolumeDriver
from cinderblock.images.port import ImageService, ImageServiceError
from cinderblock.sagas.delete import DeleteSaga
from cinderblock.sagas.meta import saga_meta
from cinderblock.sagas.migrate import MigrateSaga
from cinderblock.sagas.reencrypt import encryption_header
from cinderblock.sagas.reimage import ReimageSaga
from cinderblock.sagas.retype import RetypeSaga
from cinderblock.sagas.snapshots import SnapshotSagas
from cinderblock.sagas.sources import create_from_source, source_pool, write_image
from cinderblock.sagas.upload import UploadSaga
from cinderblock.store.volumes import Volumes
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)

Reaction = Callable[[ReceivedEnvelope], Awaitable[None]]


class Sagas:
    """One reaction per event type; each is safe to run again on redelivery."""

    def __init__(
        self, volumes: Volumes, driver: VolumeDriver, images: ImageService | None = None
    ) -> None:
        self.volumes = volumes
        self.driver = driver
        self.images = images
        snapshots = SnapshotSagas(volumes, driver)
        delete = DeleteSaga(volumes, driver)
        retype = RetypeSaga(volumes, driver)
        migrate = MigrateSaga(volumes, driver)
        self.reactions: dict[str, Reaction] = {}
        self.give_up: dict[str, Reaction] = {}
        if images is not None:
            upload = UploadSaga(volumes, driver, images)
            self.reactions["volume.upload_requested"] = upload.when_upload_requested_copy
            self.give_up["volume.upload_requested"] = upload.give_up
            reimage = ReimageSaga(volumes, driver, images)
            self.reactions["volume.reimage_requested"] = reimage.when_reimage_requested_write
            self.give_up["volume.reimage_requested"] = reimage.give_up
        self.reactions |= {
            "volume.retype_requested": retype.when_retype_requested_switch_or_move,
            "volume.retyped": retype.when_retyped_remove_old_copy,
            "snapshot.created": snapshots.when_snapshot_created_copy,
            "snapshot.delete_requested": snapshots.when_snapshot_delete_requested_remove,
            "volume.revert_requested": snapshots.when_revert_requested_restore,
            "volume.created": self.when_created_place_and_create,
            "volume.extend_requested": self.when_extend_requested_grow,
            "volume.delete_requested": delete.when_delete_requested_remove,
            "volume.unmanage_requested": self.when_unmanage_requested_forget,
            "volume.migration_started": migrate.when_migration_started_copy,
            "volume.migration_completed": migrate.when_migration_completed_remove_old_copy,
            "volume.migration_failed": migrate.when_migration_failed_remove_partial_copy,
        }
        # Compensation used when a message has used up its deliveries.
        self.give_up |= {
            "volume.retype_requested": retype.give_up,
            "snapshot.created": snapshots.give_up_snapshot,
            "snapshot.delete_requested": snapshots.give_up_snapshot_delete,
            "volume.revert_requested": snapshots.give_up_revert,
            "volume.created": self.give_up_create,
            "volume.extend_requested": self.give_up_extend,
            "volume.delete_requested": delete.give_up,
            "volume.unmanage_requested": self.give_up_unmanage,
            "volume.migration_started": migrate.give_up,
        }

    async def _volume(self, env: ReceivedEnvelope) -> Volume | None:
        return await self.volumes.store.load(UUID(env.aggregate_id), Volume)

    def _log(self, env: ReceivedEnvelope, action: str) -> dict[str, Any]:
        return {"volume_id": env.aggregate_id, "action": action, "request_id": env.request_id}

    async def when_created_place_and_create(self, env: ReceivedEnvelope) -> None:
        volume = await self._volume(env)
        if volume is None or not needs_create(volume):
            return
        meta = saga_meta(env, "create")
        try:
            location = await self._place(volume)
            header = encryption_header(volume)  # only encrypted volumes pass one
            if volume.from_source:
                host = await create_from_source(self.driver, volume, location, step_key=env.id)
            else:
                host = await self.driver.create_volume(
                    volume.vid,
                    volume.size_gb,
                    location=location,
                    step_key=env.id,
                    **({"header": header} if header is not None else {}),
                )
        except (CapacityError, BackendError) as err:
            log.warning("create failed: %s", err.reason, extra=self._log(env, "create"))
            await self.volumes.fail_create(volume.vid, err.reason, meta=meta)
            return
        if volume.from_image:
            await self._write_image(env, volume, host)
        elif not await self.volumes.complete_create(volume.vid, host, meta=meta):
            await self._remove_if_abandoned(env, host)

    async def _write_image(self, env: ReceivedEnvelope, volume: Volume, host: str) -> None:
        """The image's bytes into the new volume, then ImageWritten and CreateCompleted.
        A retryable image-service error is raised (redelivered: the create runs again).

        Compensation: the volume's file is removed and the create fails (``error``, the
        quota kept until the volume is deleted, as Cinder)."""
        meta = saga_meta(env, "create")
        try:
            checksum = await write_image(
                self.driver, self.images, volume, host, step_key=f"{env.id}:image"
            )
        except ImageServiceError as err:
            if err.retryable:
                raise
            reason = str(err)
        except (CapacityError, BackendError) as err:
            reason = err.reason
        else:
            if not await self.volumes.complete_create_from_image(
                volume.vid, host, checksum, meta=meta
            ):
                await self._remove_if_abandoned(env, host)
            return
        log.warning("create from image failed: %s", reason, extra=self._log(env, "create"))
        await self.driver.delete_volume(volume.vid, host, step_key=f"{env.id}:image-failed")
        await self.volumes.fail_create(volume.vid, reason, meta=meta)

    async def _place(self, volume: Volume) -> str:
        """The scheduler's choice (`choose_pool`). A volume made from a source goes to its
        source's pool. A redelivered create keeps the pool an earlier delivery already
        created the volume in (free space has changed since, so the choice could differ
        and leave a copy)."""
        vtype = await self.volumes.store.load(UUID(volume.volume_type_id), VolumeType)
        pools = self.driver.pools()
        fitting_type = suitable(pools, vtype, volume.multiattach)
        if volume.from_source:
            return source_pool(volume, fitting_type)
        made = [
            pool.location
            for pool in fitting_type
            if await asyncio.to_thread(self.driver.volume_path(volume.vid, pool.location).exists)
        ]
        location = choose_pool(pools, vtype, volume.size_gb, volume.multiattach, keep=made)
        if location is None:
            raise CapacityError(
                "create", volume.vid, "No valid backend was found: no pool fits the volume type"
            )
        return location

    async def _remove_if_abandoned(self, env: ReceivedEnvelope, host: str) -> None:
        """The volume was deleted while its store was being made: remove the store again
        (compensation for a create that lost the race with a delete)."""
        volume = await self._volume(env)
        if volume is not None and abandoned_during_create(volume):
            log.info(
                "volume deleted during create, removing its store", extra=self._log(env, "create")
            )
            await self.driver.delete_volume(volume.vid, host, step_key=f"{env.id}:abandoned")

    async def when_extend_requested_grow(self, env: ReceivedEnvelope) -> None:
        decision = decide_extend(await self._volume(env), env.version)
        if decision.step is ExtendStep.SKIP:
            return
        meta = saga_meta(env, "extend")
        if decision.step is ExtendStep.NO_BACKEND:
            log.warning("extend found no backend", extra=self._log(env, "extend"))
            await self.volumes.fail_extend(
                env.aggregate_id, env.version, NO_VALID_BACKEND, restore=True, meta=meta
            )
            return
        try:
            await self.driver.extend_volume(
                env.aggregate_id, decision.location, decision.new_size_gb, step_key=env.id
            )
        except CapacityError as err:
            log.warning("extend found no capacity: %s", err.reason, extra=self._log(env, "extend"))
            await self.volumes.fail_extend(
                env.aggregate_id, env.version, err.reason, restore=True, meta=meta
            )
            return
        except BackendError as err:
            log.error("extend failed: %s", err.reason, extra=self._log(env, "extend"))
            await self.volumes.fail_extend(
                env.aggregate_id, env.version, err.reason, restore=False, meta=meta
            )
            return
        await self.volumes.complete_extend(env.aggregate_id, env.version, meta=meta)

    async def when_unmanage_requested_forget(self, env: ReceivedEnvelope) -> None:
        volume = await self._volume(env)
        if volume is None or not needs_unmanage(volume) or volume.host is None:
            return
        meta = saga_meta(env, "unmanage")
        try:
            await self.driver.unmanage_volume(volume.vid, volume.host, step_key=env.id)
        except BackendError as err:
            log.error("unmanage failed: %s", err.reason, extra=self._log(env, "unmanage"))
            await self.volumes.fail_unmanage(volume.vid, err.reason, meta=meta)
            return
        await self.volumes.complete_unmanage(volume.vid, meta=meta)

    async def give_up_unmanage(self, env: ReceivedEnvelope) -> None:
        await self.volumes.fail_unmanage(
            env.aggregate_id, "gave up after repeated failures", meta=saga_meta(env, "unmanage")
        )

    async def give_up_create(self, env: ReceivedEnvelope) -> None:
        volume = await self._volume(env)
        if volume is not None and image_write_to_undo(volume):
            # an image that stayed unreadable: its volume's new file goes again
            for pool in self.driver.pools():
                path = self.driver.volume_path(volume.vid, pool.location)
                if await asyncio.to_thread(path.exists):
                    await self.driver.delete_volume(
                        volume.vid, pool.location, step_key=f"{env.id}:gave-up"
                    )
        await self.volumes.fail_create(
            env.aggregate_id, "gave up after repeated failures", meta=saga_meta(env, "create")
        )

    async def give_up_extend(self, env: ReceivedEnvelope) -> None:
        await self.volumes.fail_extend(
            env.aggregate_id,
            env.version,
            "gave up after repeated failures",
            restore=False,
            meta=saga_meta(env, "extend"),
        )
