"""Retype between types that differ in encryption: never in place (Cinder). Whether and
where is decided in `cinderblock.domain.sagas.retype` (policy ``never``: refused;
``on-demand``: the volume's pool when it suits the new type, else the freest pool that
does); this runner copies the data behind the new type's encryption header and records
the outcome. When the data does not fit (the header takes room: an
unencrypted volume retyped to an encrypted type of the same size), or the copy fails, the
retype fails cleanly: the source is untouched, migration_status ``error``, the type and the
status as before, the quota reservation released, no copy left, the reason recorded on the
``ReencryptFailed`` and ``RetypeFailed`` events and logged."""

from __future__ import annotations

import logging
from typing import Any

from cinderblock.domain.sagas.retype import (
    ATTACHED,
    NEVER_REENCRYPT,
    RetypeDecision,
    encryption_changes,
)
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_type import VolumeType
from cinderblock.drivers.base import DriverError, VolumeDriver
from cinderblock.drivers.encryption import EncryptionHeader
from cinderblock.store.retype import Reencryption
from cinderblock.store.volumes import Volumes
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)

NEVER = NEVER_REENCRYPT
__all__ = ["ATTACHED", "NEVER", "ReencryptingRetype", "encryption_changes", "encryption_header"]


def encryption_header(volume: Volume) -> EncryptionHeader | None:
    """The header the volume's image carries (None when it is not encrypted)."""
    if volume.encryption_key_id is None or not volume.encryption:
        return None
    return _header(volume.encryption, volume.encryption_key_id)


def _header(encryption: dict[str, Any], key_id: str) -> EncryptionHeader:
    return EncryptionHeader(
        provider=str(encryption.get("provider") or ""),
        cipher=encryption.get("cipher"),
        key_size=encryption.get("key_size"),
        key_id=key_id,
    )


class ReencryptingRetype:
    def __init__(self, volumes: Volumes, driver: VolumeDriver) -> None:
        self.volumes = volumes
        self.driver = driver

    async def run(
        self,
        env: ReceivedEnvelope,
        volume: Volume,
        new_type: VolumeType | None,
        decision: RetypeDecision,
    ) -> None:
        """Copy the data behind ``new_type``'s header into ``decision.target``, then
        record the retype; a driver failure records ReencryptFailed and RetypeFailed."""
        key_id = decision.key_id
        encryption = new_type.encryption if new_type is not None else None
        header = _header(encryption, key_id) if encryption and key_id else None
        try:
            where = await self.driver.reencrypt_volume(
                volume.vid, volume.host or "", decision.target or "", target=header, step_key=env.id
            )
        except DriverError as err:
            log.error(
                "retype into another encryption failed: %s",
                err.reason,
                extra={
                    "volume_id": volume.vid,
                    "action": "os-retype",
                    "request_id": env.request_id,
                },
            )
            await self._settle(
                env, failure=f"Retype failed: {err.reason}.", reencrypted=Reencryption(None, None)
            )
            return
        await self._settle(env, new_host=where, reencrypted=Reencryption(key_id, encryption))

    async def give_up(self, env: ReceivedEnvelope, volume: Volume) -> None:
        """Compensation after repeated failures: the image is made to match what the
        volume records again (its own encryption, in its own pool; a no-op unless a copy
        was already swapped in), copies in other pools are removed, the retype fails."""
        extra = {"volume_id": volume.vid, "action": "os-retype", "request_id": env.request_id}
        if volume.host is not None:
            try:
                await self.driver.reencrypt_volume(
                    volume.vid,
                    volume.host,
                    volume.host,
                    target=encryption_header(volume),
                    step_key=f"{env.id}:undo",
                )
                for pool in self.driver.pools():
                    if pool.location != volume.host:
                        await self.driver.delete_volume(
                            volume.vid, pool.location, step_key=f"{env.id}:undo"
                        )
            except DriverError as err:
                log.error("retype compensation failed: %s", err.reason, extra=extra)
        await self._settle(
            env,
            failure="Retype failed: gave up after repeated failures.",
            reencrypted=Reencryption(None, None),
        )

    async def _settle(
        self,
        env: ReceivedEnvelope,
        *,
        new_host: str | None = None,
        failure: str | None = None,
        reencrypted: Reencryption | None = None,
    ) -> None:
        await self.volumes.settle_retype(
            env.aggregate_id,
            env.version,
            new_host=new_host,
            failure=failure,
            reencrypted=reencrypted,
            meta={
                "actor": "saga:retype",
                "causation_id": env.id,
                "request_id": env.request_id,
                "global_request_id": env.meta.get("global_request_id"),
            },
        )
