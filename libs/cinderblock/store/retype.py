"""Retype verbs of the command service: the volume, its quota move between the two types'
keys (reserved at request, committed or released by the saga), in one append each."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cinderblock.domain.pending import Kind
from cinderblock.domain.quota import type_move
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_type import VolumeType
from cinderblock.store.eventstore import Position
from cinderblock.store.plumbing import CommandPlumbing

__all__ = ["Reencryption", "RetypeCommands", "type_move"]  # type_move: moved to domain.quota


@dataclass(frozen=True)
class Reencryption:
    """A retype that copied (or tried to copy) the data into a new encryption: the new
    key id and encryption (both None for an unencrypted type)."""

    key_id: str | None
    encryption: dict[str, Any] | None


class RetypeCommands(CommandPlumbing):
    async def retype_volume(
        self,
        caller: Any,
        volume_id: str,
        new_type: VolumeType,
        *,
        migration_policy: str,
        reservation_id: str,
        meta: Mapping[str, Any],
        authorize: Callable[[Volume], None],
    ) -> Position:
        async def attempt() -> Position:
            volume = await self._visible(caller, volume_id)
            authorize(volume)
            new_type.check_size(volume.size_gb)
            old_name = volume.volume_type_name
            volume.request_retype(
                new_type.tid,
                new_type.name,
                new_multiattach=new_type.multiattach,
                migration_policy=migration_policy,
                reservation_id=reservation_id,
                new_encrypted=new_type.encrypted,
            )
            quota = await self._quota(volume.project_id)
            quota.reserve(
                reservation_id,
                type_move(volume.size_gb, old_name, new_type.name),
                self.config.quota_limits,
                size_gb=volume.size_gb,
            )
            return await self.store.save(volume, quota, meta=meta)

        result: Position = await self._retrying("retype", attempt)
        return result

    async def settle_retype(
        self,
        volume_id: str,
        request_version: int,
        *,
        new_host: str | None,
        failure: str | None,
        meta: Mapping[str, Any],
        reencrypted: Reencryption | None = None,
    ) -> bool:
        """Completion (quota committed) or compensation (released, multiattach and status
        restored). False when already settled. With ``reencrypted`` the data was (or could
        not be) copied into a new encryption: recorded first, with migration_status."""

        def record(volume: Volume, _: object) -> None:
            if failure is None:
                if reencrypted is not None:
                    volume.record_reencrypted(reencrypted.key_id, reencrypted.encryption)
                volume.complete_retype(request_version, new_host)
            else:
                if reencrypted is not None:
                    volume.record_reencrypt_failed(failure)
                volume.fail_retype(request_version, failure)

        return await self.settle(
            volume_id,
            Kind.RETYPE,
            request_version,
            record,
            succeeded=failure is None,
            meta=meta,
        )
