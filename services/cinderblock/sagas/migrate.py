"""The migrate saga: on MigrationStarted the scheduler's check (the volume type's placement
rule, `cinderblock.domain.sagas.migrate.choose_migration_target`), then the verified copy
into the chosen pool, MigrationCompleted or MigrationFailed; the old copy is removed on
MigrationCompleted, a partial one on MigrationFailed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from cinderblock.domain.pending import Kind
from cinderblock.domain.sagas.migrate import (
    MigrationTarget,
    choose_migration_target,
    in_destination,
    migration_to_run,
    partial_copies,
)
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_type import VolumeType
from cinderblock.drivers.base import BackendError, CapacityError, VolumeDriver
from cinderblock.sagas.meta import saga_meta
from cinderblock.store.volumes import Volumes
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)

GAVE_UP = "gave up after repeated failures"


def _log(env: ReceivedEnvelope) -> dict[str, Any]:
    return {"volume_id": env.aggregate_id, "action": "migrate", "request_id": env.request_id}


class MigrateSaga:
    def __init__(self, volumes: Volumes, driver: VolumeDriver) -> None:
        self.volumes = volumes
        self.driver = driver

    async def _volume(self, env: ReceivedEnvelope) -> Volume | None:
        return await self.volumes.store.load(UUID(env.aggregate_id), Volume)

    async def when_migration_started_copy(self, env: ReceivedEnvelope) -> None:
        volume = await self._volume(env)
        destination = migration_to_run(volume, env.version)
        if volume is None or volume.host is None or destination is None:
            return
        meta = saga_meta(env, "migrate")
        version = env.version
        target = await self._target(volume, destination)
        if target.pool is None:
            reason = str(target.refusal)
            log.warning("migration refused by the scheduler: %s", reason, extra=_log(env))
            await self._settle(
                volume.vid, version, lambda v: v.fail_migration(version, reason), meta=meta
            )
            return
        await self._settle(
            volume.vid, version, lambda v: v.mark_migration_copying(version), meta=meta
        )
        try:
            new_host = await self.driver.migrate_volume(
                volume.vid, volume.host, target.pool, step_key=env.id
            )
        except (CapacityError, BackendError) as err:
            failure = err.reason
            log.error("migration failed: %s", failure, extra=_log(env))
            await self._settle(
                volume.vid, version, lambda v: v.fail_migration(version, failure), meta=meta
            )
            return
        await self._settle(
            volume.vid, version, lambda v: v.complete_migration(version, new_host), meta=meta
        )

    async def _target(self, volume: Volume, destination: str) -> MigrationTarget:
        """The scheduler's choice among the destination's pools, for the volume's type. A
        redelivered migration keeps the pool an earlier delivery already copied into."""
        vtype = await self.volumes.store.load(UUID(volume.volume_type_id), VolumeType)
        pools = self.driver.pools()
        made = [
            pool.location
            for pool in pools
            if in_destination(pool.location, destination, volume.host)
            and await asyncio.to_thread(self.driver.volume_path(volume.vid, pool.location).exists)
        ]
        return choose_migration_target(volume, destination, vtype, pools, made)

    async def _settle(
        self,
        volume_id: str,
        version: int,
        record: Callable[[Volume], object],
        *,
        meta: dict[str, Any],
    ) -> bool:
        """One migrate-saga outcome; False when the migration is no longer pending."""
        return await self.volumes.settle(
            volume_id,
            Kind.MIGRATION,
            version,
            lambda v, _: record(v),
            succeeded=True,  # a migration holds no reservation
            meta=meta,
        )

    async def when_migration_completed_remove_old_copy(self, env: ReceivedEnvelope) -> None:
        old, new = env.data["previous_host"], env.data["host"]
        if old and old != new:
            await self.driver.delete_volume(env.aggregate_id, old, step_key=env.id)

    async def when_migration_failed_remove_partial_copy(self, env: ReceivedEnvelope) -> None:
        """A copy verified at the destination may outlive a migration that gave up later:
        remove the volume from every destination pool but the one it lives in."""
        volume = await self._volume(env)
        if volume is None:
            return
        locations = [pool.location for pool in self.driver.pools()]
        for location in partial_copies(locations, str(env.data["destination"]), volume.host):
            await self.driver.delete_volume(volume.vid, location, step_key=env.id)

    async def give_up(self, env: ReceivedEnvelope) -> None:
        version = env.version
        await self._settle(
            env.aggregate_id,
            version,
            lambda v: v.fail_migration(version, GAVE_UP),
            meta=saga_meta(env, "migrate"),
        )
