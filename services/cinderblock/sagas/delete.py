"""The delete saga: remove a volume from its backend, after the snapshots a cascade delete
took with it, and record each removal.

Steps, each keyed ``<event id>:snapshot:<id>`` or ``<event id>`` for the driver:
1. for every snapshot of the volume (all ``deleting``: a volume in ``deleting`` with
   snapshots is a cascade), remove its copy, then record ``Snapshot.Deleted`` with its
   quota given back (the record is guarded by the snapshot's status, so a redelivery after
   a crash skips what was recorded and redoes at most one idempotent driver step);
2. remove the volume's image, then record ``Volume.Deleted`` with its quota given back.

Compensation: a driver failure (or a snapshot found in another status) sends the volume and
every snapshot still ``deleting`` to ``error_deleting`` in one append; snapshots already
deleted stay deleted.
"""

from __future__ import annotations

import logging
from uuid import UUID

from cinderblock.domain.sagas.lifecycle import needs_delete
from cinderblock.domain.sagas.snapshots import SnapshotStep, decide_snapshot_in_volume_delete
from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.volume import Volume
from cinderblock.drivers.base import BackendError, VolumeDriver
from cinderblock.sagas.meta import saga_meta
from cinderblock.store.volumes import Volumes
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)


class DeleteSaga:
    def __init__(self, volumes: Volumes, driver: VolumeDriver) -> None:
        self.volumes = volumes
        self.driver = driver

    async def when_delete_requested_remove(self, env: ReceivedEnvelope) -> None:
        volume = await self.volumes.store.load(UUID(env.aggregate_id), Volume)
        if volume is None or not needs_delete(volume) or volume.host is None:
            return
        meta = saga_meta(env, "delete")
        extra = {"volume_id": volume.vid, "action": "delete", "request_id": env.request_id}
        for sid in list(volume.snapshot_ids):
            snapshot = await self.volumes.store.load(UUID(sid), Snapshot)
            decision = decide_snapshot_in_volume_delete(sid, snapshot, volume.host)
            if decision.step is SnapshotStep.SKIP:
                continue
            if decision.step is SnapshotStep.FAIL:
                reason = decision.reason or ""
                log.error("delete failed: %s", reason, extra=extra)
                await self.volumes.fail_delete_with_snapshots(volume.vid, reason, meta=meta)
                return
            try:
                await self.driver.delete_snapshot(
                    sid, volume.host, step_key=f"{env.id}:snapshot:{sid}"
                )
            except BackendError as err:
                log.error("delete of snapshot %s failed: %s", sid, err.reason, extra=extra)
                await self.volumes.fail_delete_with_snapshots(volume.vid, err.reason, meta=meta)
                return
            await self.volumes.complete_snapshot_delete(sid, meta=meta)
        try:
            await self.driver.delete_volume(volume.vid, volume.host, step_key=env.id)
        except BackendError as err:
            log.error("delete failed: %s", err.reason, extra=extra)
            await self.volumes.fail_delete_with_snapshots(volume.vid, err.reason, meta=meta)
            return
        await self.volumes.complete_delete(volume.vid, meta=meta)

    async def give_up(self, env: ReceivedEnvelope) -> None:
        await self.volumes.fail_delete_with_snapshots(
            env.aggregate_id, "gave up after repeated failures", meta=saga_meta(env, "delete")
        )
