"""The export saga: attach and detach as driver work. ``ExportRequested`` (os-initialize_connection,
an attachment's connector) asks the backend for an export and records ExportCreated (with
the attachment's AttachmentConnected) or ExportFailed; ``UnexportRequested`` (the detaching
actions) removes exports and records ExportsRemoved (with the detach) or UnexportFailed.
The API waits for these outcomes, as Cinder's API waits on its RPC call to the volume
service.

Idempotent: a redelivery after the outcome was recorded finds no pending request (the
domain's ``export_request`` / ``unexport_request``) and does nothing; one before it asks the
driver again, which answers the export it already made (never a second one) or finds the
export already removed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

from cinderblock.domain.volume import Volume
from cinderblock.drivers.base import DriverError, ExportSpec, VolumeDriver
from cinderblock.sagas.meta import saga_meta
from cinderblock.store.volumes import Volumes
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)

EXPORT_REQUESTED = "volume.export_requested"
UNEXPORT_REQUESTED = "volume.unexport_requested"
GAVE_UP = "gave up after repeated failures"


class ExportSaga:
    def __init__(self, volumes: Volumes, driver: VolumeDriver) -> None:
        self.volumes = volumes
        self.driver = driver

    def register(self, reactions: dict[str, Any], give_up: dict[str, Any]) -> None:
        """Add this saga's reactions (and last-delivery compensations) to the runner's."""
        reactions[EXPORT_REQUESTED] = self.when_export_requested_export
        reactions[UNEXPORT_REQUESTED] = self.when_unexport_requested_remove
        give_up[EXPORT_REQUESTED] = self.give_up_export
        give_up[UNEXPORT_REQUESTED] = self.give_up_unexport

    async def _volume(self, env: ReceivedEnvelope) -> Volume | None:
        return await self.volumes.store.load(UUID(env.aggregate_id), Volume)

    async def when_export_requested_export(self, env: ReceivedEnvelope) -> None:
        """Export the volume to the request's connector, then record the connection.

        Compensation: a failed export records ExportFailed (the attachment stays reserved,
        or is taken back when the same request reserved it); an export made for an
        attachment deleted meanwhile is removed again."""
        volume = await self._volume(env)
        request = volume.export_request(env.version) if volume is not None else None
        if volume is None or request is None:
            return
        if volume.host is None:
            await self._fail_export(env, "the volume is on no backend")
            return
        try:
            await self._drop_stale(env, volume.vid, volume.host)
        except DriverError as err:
            await self._fail_export(env, err.reason)
            return
        row = volume.attachments.get(request["attachment_id"] or "")
        spec = ExportSpec(
            export_id=request["export_id"],
            connector=request["connector"],
            access_mode=request["mode"],
            encrypted=volume.encrypted,
            multiattach=volume.multiattach,
            instance_uuid=row["instance_uuid"] if row is not None else None,
        )
        try:
            info = await self.driver.initialize_connection(
                volume.vid, volume.host, spec, step_key=env.id
            )
        except DriverError as err:
            await self._fail_export(env, err.reason)
            return
        kept: list[bool] = []
        version = env.version

        def record(v: Volume) -> None:
            kept[:] = [v.complete_export(version, info)]

        settled = await self.volumes.settle_saga_step(
            volume.vid, record, meta=saga_meta(env, "attach")
        )
        if settled and kept == [False]:
            log.info("export abandoned, removing it", extra=self._log(env, "attach"))
            await self.driver.terminate_connection(
                volume.vid, volume.host, spec.export_id, step_key=f"{env.id}:abandoned"
            )

    async def _drop_stale(self, env: ReceivedEnvelope, volume_id: str, host: str) -> None:
        """Remove the backend's exports of the volume it no longer stands behind (an
        attachment removed by os-reset_status kept its export), so they do not hold a
        volume that is not multiattach. The volume is read again after the backend: an
        export found there was requested before, so its request is seen."""
        on_disk = await asyncio.to_thread(self.driver.exports, volume_id, host)
        if not on_disk:
            return
        volume = await self._volume(env)
        if volume is None:
            return
        referenced = volume.referenced_exports()
        for record in on_disk:
            export_id = str(record["export_id"])
            if export_id not in referenced:
                log.info("removing stale export %s", export_id, extra=self._log(env, "attach"))
                await self.driver.terminate_connection(
                    volume_id, host, export_id, step_key=f"{env.id}:stale:{export_id}"
                )

    async def when_unexport_requested_remove(self, env: ReceivedEnvelope) -> None:
        """Remove the request's exports, then record the detach it was for.

        Compensation: a removal that fails records UnexportFailed; nothing is detached
        (exports already removed stay removed: the host asked to let go)."""
        volume = await self._volume(env)
        request = volume.unexport_request(env.version) if volume is not None else None
        if volume is None or request is None:
            return
        if volume.host is not None:
            try:
                for export_id in request["export_ids"]:
                    await self.driver.terminate_connection(
                        volume.vid, volume.host, export_id, step_key=f"{env.id}:{export_id}"
                    )
            except DriverError as err:
                await self._fail_unexport(env, err.reason)
                return
        version = env.version
        await self.volumes.settle_saga_step(
            volume.vid, lambda v: v.finish_unexport(version), meta=saga_meta(env, "detach")
        )

    async def give_up_export(self, env: ReceivedEnvelope) -> None:
        await self._fail_export(env, GAVE_UP)

    async def give_up_unexport(self, env: ReceivedEnvelope) -> None:
        await self._fail_unexport(env, GAVE_UP)

    async def _fail_export(self, env: ReceivedEnvelope, reason: str) -> None:
        log.warning("export failed: %s", reason, extra=self._log(env, "attach"))
        version = env.version
        await self.volumes.settle_saga_step(
            env.aggregate_id,
            lambda v: v.fail_export(version, reason),
            meta=saga_meta(env, "attach"),
        )

    async def _fail_unexport(self, env: ReceivedEnvelope, reason: str) -> None:
        log.warning("export removal failed: %s", reason, extra=self._log(env, "detach"))
        version = env.version
        await self.volumes.settle_saga_step(
            env.aggregate_id,
            lambda v: v.fail_unexport(version, reason),
            meta=saga_meta(env, "detach"),
        )

    def _log(self, env: ReceivedEnvelope, action: str) -> dict[str, Any]:
        return {"volume_id": env.aggregate_id, "action": action, "request_id": env.request_id}
