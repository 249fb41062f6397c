"""The retype saga: switch the type in place when the volume's pool suits the new type;
otherwise move the data (migration policy on-demand) or refuse (never). Ends in Retyped or
RetypeFailed; the old copy of moved data is removed on Retyped."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from cinderblock.domain.placement import choose_pool, suits
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_type import VolumeType
from cinderblock.drivers.base import BackendError, CapacityError, PoolStats, VolumeDriver
from cinderblock.sagas.meta import saga_meta
from cinderblock.sagas.reencrypt import ReencryptingRetype, encryption_changes
from cinderblock.store.volumes import Volumes
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)


def _meta(env: ReceivedEnvelope) -> dict[str, Any]:
    return saga_meta(env, "retype")


class RetypeSaga:
    def __init__(self, volumes: Volumes, driver: VolumeDriver) -> None:
        self.volumes = volumes
        self.driver = driver

    @staticmethod
    def _suits_here(
        pools: dict[str, PoolStats], volume: Volume, new_type: VolumeType | None
    ) -> bool:
        here = pools.get(volume.host or "")
        return here is not None and suits(here, new_type, volume.multiattach)

    async def when_retype_requested_switch_or_move(self, env: ReceivedEnvelope) -> None:
        volume = await self.volumes.store.load(UUID(env.aggregate_id), Volume)
        pending = volume.pending_retype if volume is not None else None
        if volume is None or pending is None or pending["request_version"] != env.version:
            return
        new_type = await self.volumes.store.load(UUID(pending["new_type_id"]), VolumeType)
        pools = {pool.location: pool for pool in self.driver.pools()}
        moving = encryption_changes(volume, new_type) or not self._suits_here(
            pools, volume, new_type
        )
        if moving and volume.snapshot_ids and pending["migration_policy"] == "on-demand":
            # Cinder refuses a retype that needs a migration while the volume has snapshots
            # (they live beside the volume and would be left behind).
            await self._settle(
                env, new_host=None, failure="the volume has snapshots and would have to move"
            )
            return
        if encryption_changes(volume, new_type):  # never in place: a copy or a refusal
            await ReencryptingRetype(self.volumes, self.driver).run(env, volume, new_type, pools)
            return
        if self._suits_here(pools, volume, new_type):
            await self._settle(env, new_host=None, failure=None)
            return
        if pending["migration_policy"] != "on-demand":
            await self._settle(
                env,
                new_host=None,
                failure="the volume's backend does not suit the new type and "
                "the migration policy is 'never'",
            )
            return
        target = choose_pool(
            list(pools.values()),
            new_type,
            volume.size_gb,
            volume.multiattach,
            exclude={volume.host or ""},
        )
        if target is None or volume.host is None:
            await self._settle(env, new_host=None, failure="No valid backend was found.")
            return
        try:
            moved = await self.driver.migrate_volume(
                volume.vid, volume.host, target, step_key=env.id
            )
        except (CapacityError, BackendError) as err:
            log.error(
                "retype migration failed: %s",
                err.reason,
                extra={
                    "volume_id": volume.vid,
                    "action": "os-retype",
                    "request_id": env.request_id,
                },
            )
            await self._settle(env, new_host=None, failure=err.reason)
            return
        await self._settle(env, new_host=moved, failure=None)

    async def when_retyped_remove_old_copy(self, env: ReceivedEnvelope) -> None:
        old, new = env.data.get("previous_host"), env.data.get("host")
        if old and new and old != new:
            await self.driver.delete_volume(env.aggregate_id, old, step_key=env.id)

    async def give_up(self, env: ReceivedEnvelope) -> None:
        volume = await self.volumes.store.load(UUID(env.aggregate_id), Volume)
        pending = volume.pending_retype if volume is not None else None
        if volume is not None and pending is not None and pending["request_version"] == env.version:
            new_type = await self.volumes.store.load(UUID(pending["new_type_id"]), VolumeType)
            if encryption_changes(volume, new_type):
                await ReencryptingRetype(self.volumes, self.driver).give_up(env, volume)
                return
        await self._settle(env, new_host=None, failure="gave up after repeated failures")

    async def _settle(
        self, env: ReceivedEnvelope, *, new_host: str | None, failure: str | None
    ) -> None:
        await self.volumes.settle_retype(
            env.aggregate_id, env.version, new_host=new_host, failure=failure, meta=_meta(env)
        )
