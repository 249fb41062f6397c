"""The retype saga: load, decide (`cinderblock.domain.sagas.retype`: in place, move,
re-encrypt or refuse), call the driver, record Retyped or RetypeFailed. The old copy of
moved data is removed on Retyped."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from cinderblock.domain.sagas.retype import (
    RetypeStep,
    decide_retype,
    give_up_reencrypts,
    retype_to_run,
)
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_type import VolumeType
from cinderblock.drivers.base import BackendError, CapacityError, VolumeDriver
from cinderblock.sagas.meta import saga_meta
from cinderblock.sagas.reencrypt import ReencryptingRetype
from cinderblock.store.volumes import Volumes
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)


def _meta(env: ReceivedEnvelope) -> dict[str, Any]:
    return saga_meta(env, "retype")


class RetypeSaga:
    def __init__(self, volumes: Volumes, driver: VolumeDriver) -> None:
        self.volumes = volumes
        self.driver = driver

    async def _load(self, env: ReceivedEnvelope) -> tuple[Volume | None, VolumeType | None]:
        """The volume, and the type its pending retype asks for (None when not pending)."""
        volume = await self.volumes.store.load(UUID(env.aggregate_id), Volume)
        pending = retype_to_run(volume, env.version)
        if pending is None:
            return volume, None
        new_type_id = UUID(pending.payload.new_type_id)
        return volume, await self.volumes.store.load(new_type_id, VolumeType)

    async def when_retype_requested_switch_or_move(self, env: ReceivedEnvelope) -> None:
        volume, new_type = await self._load(env)
        decision = decide_retype(volume, env.version, new_type, self.driver.pools())
        if decision.step is RetypeStep.SKIP or volume is None:
            return
        if decision.step is RetypeStep.REFUSE:
            await self._settle(env, new_host=None, failure=decision.reason)
            return
        if decision.step is RetypeStep.IN_PLACE:
            await self._settle(env, new_host=None, failure=None)
            return
        if decision.step is RetypeStep.REENCRYPT:
            await ReencryptingRetype(self.volumes, self.driver).run(env, volume, new_type, decision)
            return
        try:
            moved = await self.driver.migrate_volume(
                volume.vid, volume.host or "", decision.target or "", step_key=env.id
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
        volume, new_type = await self._load(env)
        if volume is not None and give_up_reencrypts(volume, env.version, new_type):
            await ReencryptingRetype(self.volumes, self.driver).give_up(env, volume)
            return
        await self._settle(env, new_host=None, failure="gave up after repeated failures")

    async def _settle(
        self, env: ReceivedEnvelope, *, new_host: str | None, failure: str | None
    ) -> None:
        await self.volumes.settle_retype(
            env.aggregate_id, env.version, new_host=new_host, failure=failure, meta=_meta(env)
        )
