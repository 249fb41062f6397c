"""Snapshot sagas: make and remove a snapshot's copy, and revert a volume to its newest
snapshot. Each ends in a completion event or a compensating one; what to do is decided in
`cinderblock.domain.sagas.snapshots`."""

from __future__ import annotations

import contextlib
import logging
from typing import Any
from uuid import UUID

from cinderblock.domain.sagas.snapshots import (
    SnapshotStep,
    copy_outlived_snapshot,
    decide_snapshot_create,
    decide_snapshot_delete,
    revert_to_run,
)
from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.volume import Volume
from cinderblock.drivers.base import BackendError, CapacityError, VolumeDriver
from cinderblock.sagas.meta import saga_meta
from cinderblock.store.volumes import Volumes
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)


def _meta(env: ReceivedEnvelope, saga: str) -> dict[str, Any]:
    return saga_meta(env, saga)


class SnapshotSagas:
    def __init__(self, volumes: Volumes, driver: VolumeDriver) -> None:
        self.volumes = volumes
        self.driver = driver

    async def _pair(self, snapshot_id: str) -> tuple[Snapshot | None, Volume | None]:
        snapshot = await self.volumes.store.load(UUID(snapshot_id), Snapshot)
        if snapshot is None:
            return None, None
        return snapshot, await self.volumes.store.load(UUID(snapshot.volume_id), Volume)

    async def when_snapshot_created_copy(self, env: ReceivedEnvelope) -> None:
        """Compensation: a driver failure → the snapshot goes to ``error`` (its quota stays
        used until it is deleted, as in Cinder)."""
        snapshot, volume = await self._pair(env.aggregate_id)
        decision = decide_snapshot_create(snapshot, volume)
        if decision.step is SnapshotStep.SKIP or snapshot is None:
            return
        meta = _meta(env, "snapshot")
        if decision.step is SnapshotStep.FAIL or volume is None:
            reason = decision.reason or ""
            await self.volumes.settle_snapshot(
                snapshot.sid, lambda s: s.fail_create(reason), meta=meta
            )
            return
        host = decision.host or ""
        try:
            await self.driver.create_snapshot(volume.vid, snapshot.sid, host, step_key=env.id)
        except (CapacityError, BackendError) as err:
            reason = err.reason
            log.error(
                "snapshot failed: %s",
                reason,
                extra={"volume_id": volume.vid, "action": "snapshot", "request_id": env.request_id},
            )
            await self.volumes.settle_snapshot(
                snapshot.sid, lambda s: s.fail_create(reason), meta=meta
            )
            return
        if await self.volumes.settle_snapshot(snapshot.sid, Snapshot.complete_create, meta=meta):
            return
        again, _ = await self._pair(snapshot.sid)
        if copy_outlived_snapshot(again):
            with contextlib.suppress(BackendError):
                await self.driver.delete_snapshot(snapshot.sid, host, step_key=env.id)

    async def when_snapshot_delete_requested_remove(self, env: ReceivedEnvelope) -> None:
        """Compensation: a driver failure → ``error_deleting``."""
        snapshot, volume = await self._pair(env.aggregate_id)
        decision = decide_snapshot_delete(snapshot, volume)
        if decision.step is SnapshotStep.SKIP or snapshot is None:
            return
        meta = _meta(env, "delete_snapshot")
        if decision.step is SnapshotStep.REMOVE:
            try:
                await self.driver.delete_snapshot(
                    snapshot.sid, decision.host or "", step_key=env.id
                )
            except BackendError as err:
                reason = err.reason
                await self.volumes.settle_snapshot(
                    snapshot.sid, lambda s: s.fail_delete(reason), meta=meta
                )
                return
        await self.volumes.complete_snapshot_delete(snapshot.sid, meta=meta)

    async def when_revert_requested_restore(self, env: ReceivedEnvelope) -> None:
        """Compensation: a driver failure → the volume goes to ``error``, the snapshot back to
        ``available`` (Cinder's manager does the same)."""
        volume = await self.volumes.store.load(UUID(env.aggregate_id), Volume)
        run = revert_to_run(volume, env.version)
        if run is None:
            return
        meta = _meta(env, "revert")
        try:
            await self.driver.revert_to_snapshot(
                env.aggregate_id, run.snapshot_id, run.host, step_key=env.id
            )
        except (CapacityError, BackendError) as err:
            log.error(
                "revert failed: %s",
                err.reason,
                extra={
                    "volume_id": env.aggregate_id,
                    "action": "revert",
                    "request_id": env.request_id,
                },
            )
            await self.volumes.settle_revert(env.aggregate_id, env.version, err.reason, meta=meta)
            return
        await self.volumes.settle_revert(env.aggregate_id, env.version, None, meta=meta)

    async def give_up_snapshot(self, env: ReceivedEnvelope) -> None:
        await self.volumes.settle_snapshot(
            env.aggregate_id,
            lambda s: s.fail_create("gave up after repeated failures"),
            meta=_meta(env, "snapshot"),
        )

    async def give_up_snapshot_delete(self, env: ReceivedEnvelope) -> None:
        await self.volumes.settle_snapshot(
            env.aggregate_id,
            lambda s: s.fail_delete("gave up after repeated failures"),
            meta=_meta(env, "delete_snapshot"),
        )

    async def give_up_revert(self, env: ReceivedEnvelope) -> None:
        await self.volumes.settle_revert(
            env.aggregate_id,
            env.version,
            "gave up after repeated failures",
            meta=_meta(env, "revert"),
        )
