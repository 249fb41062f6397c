"""The Volumes command service: loads aggregates, asks them to act, saves their events.

Every public method is one Cinder verb. A version conflict reloads and retries (at once
within the process, with jittered back-off against other processes); only if it outlasts a
deadline, ConflictError (HTTP 409)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID, uuid4

from cinderblock.domain.commands import VolumeCommand
from cinderblock.domain.errors import VolumeError, VolumeNotFoundError
from cinderblock.domain.pending import Kind
from cinderblock.domain.quota import DEFAULT_LIMITS, ProjectQuota, quota_id, volume_deltas
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_type import DEFAULT_TYPE_ID as _DEFAULT_TYPE_ID
from cinderblock.domain.volume_type import DEFAULT_TYPE_NAME as _DEFAULT_TYPE_NAME
from cinderblock.domain.volume_type import VolumeType
from cinderblock.store.eventstore import ConcurrencyConflictError, EventStore, Position
from cinderblock.store.messages import MessageCommands
from cinderblock.store.quotas import QuotaCommands
from cinderblock.store.retype import RetypeCommands
from cinderblock.store.settle import SettleCommands
from cinderblock.store.snapshots import SnapshotCommands
from cinderblock.store.swap import SwapCommands
from cinderblock.store.types import TypeCommands
from cinderblock.store.writer import LocalConflictError, attempt

log = logging.getLogger(__name__)

T = TypeVar("T")
_FIRST_BACKOFF = 0.005
_MAX_BACKOFF = 0.25
DEFAULT_TYPE_NAME = _DEFAULT_TYPE_NAME
DEFAULT_TYPE_ID = str(_DEFAULT_TYPE_ID)


class ConflictError(VolumeError):
    """Raised when concurrent writers kept changing the same aggregate."""

    code = "conflict"


@dataclass(frozen=True)
class Caller:
    """Who asks: the project scopes what they may see unless they are an admin."""

    user_id: str
    project_id: str
    is_admin: bool = False


@dataclass(frozen=True)
class VolumesConfig:
    quota_limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    default_availability_zone: str = "nova"
    # Seconds a command keeps retrying version conflicts with other processes before 409.
    conflict_deadline: float = 10.0


Authorize = Callable[[Volume], None]


def _allow_all(_: Volume) -> None:
    return None


class Volumes(
    SnapshotCommands,
    TypeCommands,
    RetypeCommands,
    SwapCommands,
    QuotaCommands,
    SettleCommands,
    MessageCommands,
):
    """Cinder's verbs on the Volume aggregate. Returns the log position of what it wrote."""

    def __init__(self, store: EventStore, config: VolumesConfig | None = None) -> None:
        self.store = store
        self.config = config or VolumesConfig()

    # ------------------------------------------------------------ plumbing

    async def _retrying(self, what: str, body: Callable[[], Awaitable[T]]) -> T:
        """Run one command until it is decided against the newest state.

        Within this process commands on one aggregate do not race: each builds on the state
        the previous one appended (see `cinderblock.store.writer`), and one that lost the
        in-memory check retries at once. A conflict with another process backs off with
        jitter and retries until ``conflict_deadline`` seconds have passed: only then the
        command answers 409."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.conflict_deadline
        backoff = _FIRST_BACKOFF
        tries = 0
        while True:
            tries += 1
            try:
                with attempt() as current:
                    try:
                        result = await body()
                    except ConcurrencyConflictError:
                        raise
                    except Exception:
                        await current.settle()  # a refusal must rest on committed state
                        raise
                    await current.settle()
                    return result
            except LocalConflictError:
                if loop.time() > deadline:
                    break
                await asyncio.sleep(0)
            except ConcurrencyConflictError as err:
                now = loop.time()
                if now >= deadline:
                    break
                log.info(
                    "version conflict, retrying",
                    extra={"action": what, "attempt": tries, "error": str(err)[:200]},
                )
                await asyncio.sleep(min(random.uniform(0, backoff), deadline - now))
                backoff = min(backoff * 2, _MAX_BACKOFF)
        log.warning(
            "version conflicts outlasted the deadline", extra={"action": what, "attempts": tries}
        )
        raise ConflictError(f"Concurrent updates kept conflicting with {what}; try again.")

    async def _visible(self, caller: Caller | None, volume_id: str) -> Volume:
        try:
            vid = UUID(volume_id)
        except ValueError:
            raise VolumeNotFoundError(volume_id) from None
        volume = await self.store.load(vid, Volume)
        if volume is None or volume.is_deleted:
            raise VolumeNotFoundError(volume_id)
        if caller is not None and not caller.is_admin and volume.project_id != caller.project_id:
            raise VolumeNotFoundError(volume_id)
        return volume

    async def _quota(self, project_id: str) -> ProjectQuota:
        quota = await self.store.load(quota_id(project_id), ProjectQuota)
        return quota if quota is not None else ProjectQuota.start(project_id)

    async def get(self, caller: Caller | None, volume_id: str) -> Volume:
        """The volume as the event log has it now (commands only; queries use read models)."""
        return await self._visible(caller, volume_id)

    # ------------------------------------------------------------ create / delete

    async def create_volume(
        self,
        caller: Caller,
        volume_id: UUID,
        *,
        meta: Mapping[str, Any],
        encryption: Mapping[str, Any] | None = None,
        source: Mapping[str, Any] | None = None,
        image: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Position:
        """With ``encryption`` (the type's, or the source's), the volume gets a copy of it
        and a new key id in the same append; with ``source`` (``snapshot_id``,
        ``source_volid``, ``source_host``: see `domain.volume_source`) its source too; with
        ``image`` (the image service's record, checked: see `domain.volume_image`) the image
        it is made from."""
        fields.setdefault("volume_type_id", DEFAULT_TYPE_ID)
        fields.setdefault("volume_type_name", DEFAULT_TYPE_NAME)
        fields.setdefault("availability_zone", self.config.default_availability_zone)

        async def attempt() -> Position:
            volume = Volume.create(
                volume_id, project_id=caller.project_id, user_id=caller.user_id, **fields
            )
            if encryption is not None:
                volume.set_encryption(str(uuid4()), dict(encryption))
            if source is not None:
                volume.set_source(**source)
            if image is not None:
                volume.set_image_source(image)
            quota = await self._quota(caller.project_id)
            deltas = volume_deltas(volume.size_gb, volume.volume_type_name, count=1)
            quota.consume(
                deltas,
                self.config.quota_limits,
                size_gb=volume.size_gb,
                reason=f"create {volume_id}",
            )
            return await self.store.save(volume, quota, meta=meta)

        return await self._retrying("create", attempt)

    async def delete_volume(
        self,
        caller: Caller,
        volume_id: str,
        *,
        meta: Mapping[str, Any],
        force: bool = False,
        authorize: Authorize = _allow_all,
    ) -> Position:
        async def attempt() -> Position:
            volume = await self._visible(caller, volume_id)
            authorize(volume)
            interrupted = volume.pending_of(Kind.EXTEND)  # a forced delete cancels an extend
            gone = volume.request_delete(force=force)
            quota = await self._quota(volume.project_id)
            if interrupted is not None:
                quota.release(interrupted.reservation)
            if gone:
                quota.release_usage(
                    volume_deltas(volume.size_gb, volume.volume_type_name, count=1),
                    reason=f"delete {volume_id}",
                )
            return await self.store.save(volume, quota, meta=meta)

        return await self._retrying("delete", attempt)

    async def complete_create(self, volume_id: str, host: str, *, meta: Mapping[str, Any]) -> bool:
        return await self._finish(volume_id, meta, lambda v: v.complete_create(host))

    async def complete_create_from_image(
        self, volume_id: str, host: str, checksum: str, *, meta: Mapping[str, Any]
    ) -> bool:
        return await self._finish(
            volume_id, meta, lambda v: v.complete_create_from_image(host, checksum)
        )

    async def fail_create(self, volume_id: str, reason: str, *, meta: Mapping[str, Any]) -> bool:
        return await self._finish(volume_id, meta, lambda v: v.fail_create(reason))

    async def fail_delete(self, volume_id: str, reason: str, *, meta: Mapping[str, Any]) -> bool:
        return await self._finish(volume_id, meta, lambda v: v.fail_delete(reason))

    async def complete_delete(self, volume_id: str, *, meta: Mapping[str, Any]) -> bool:
        return await self._remove(volume_id, meta, Volume.complete_delete, "delete")

    async def complete_unmanage(self, volume_id: str, *, meta: Mapping[str, Any]) -> bool:
        return await self._remove(volume_id, meta, Volume.complete_unmanage, "unmanage")

    async def fail_unmanage(self, volume_id: str, reason: str, *, meta: Mapping[str, Any]) -> bool:
        return await self._finish(volume_id, meta, lambda v: v.fail_unmanage(reason))

    async def _remove(
        self, volume_id: str, meta: Mapping[str, Any], complete: Callable[[Volume], bool], verb: str
    ) -> bool:
        """The volume left the backend (deleted or unmanaged): record it and give its usage
        back to the project's quota in the same append."""

        async def attempt() -> bool:
            volume = await self.store.load(UUID(volume_id), Volume)
            if volume is None or not complete(volume):
                return False
            quota = await self._quota(volume.project_id)
            quota.release_usage(
                volume_deltas(volume.size_gb, volume.volume_type_name, count=1),
                reason=f"{verb} {volume_id}",
            )
            await self.store.save(volume, quota, meta=meta)
            return True

        return await self._retrying(f"complete {verb}", attempt)

    async def unmanage_volume(
        self,
        caller: Caller,
        volume_id: str,
        *,
        meta: Mapping[str, Any],
        authorize: Authorize = _allow_all,
    ) -> Position:
        async def attempt() -> Position:
            volume = await self._visible(caller, volume_id)
            authorize(volume)
            if not volume.request_unmanage():
                return await self.store.save(volume, meta=meta)
            quota = await self._quota(volume.project_id)
            quota.release_usage(
                volume_deltas(volume.size_gb, volume.volume_type_name, count=1),
                reason=f"unmanage {volume_id}",
            )
            return await self.store.save(volume, quota, meta=meta)

        return await self._retrying("unmanage", attempt)

    async def _finish(
        self, volume_id: str, meta: Mapping[str, Any], change: Callable[[Volume], bool]
    ) -> bool:
        """Apply a saga outcome that touches only the volume; False if already recorded."""

        async def attempt() -> bool:
            volume = await self.store.load(UUID(volume_id), Volume)
            if volume is None or not change(volume):
                return False
            await self.store.save(volume, meta=meta)
            return True

        return await self._retrying("saga outcome", attempt)

    # ------------------------------------------------------------ actions

    async def extend_volume(
        self,
        caller: Caller,
        volume_id: str,
        new_size_gb: int,
        *,
        in_use_allowed: bool,
        reservation_id: str,
        meta: Mapping[str, Any],
        authorize: Authorize = _allow_all,
    ) -> Position:
        async def attempt() -> Position:
            volume = await self._visible(caller, volume_id)
            authorize(volume)
            delta = new_size_gb - volume.size_gb
            vtype = await self.store.load(UUID(volume.volume_type_id), VolumeType)
            if vtype is not None and new_size_gb > volume.size_gb:
                vtype.check_size(new_size_gb)
            volume.request_extend(
                new_size_gb, in_use_allowed=in_use_allowed, reservation_id=reservation_id
            )
            quota = await self._quota(volume.project_id)
            quota.reserve(
                reservation_id,
                volume_deltas(delta, volume.volume_type_name, count=0),
                self.config.quota_limits,
                size_gb=new_size_gb,
            )
            return await self.store.save(volume, quota, meta=meta)

        return await self._retrying("extend", attempt)

    async def complete_extend(
        self, volume_id: str, request_version: int, *, meta: Mapping[str, Any]
    ) -> bool:
        """The backend grew the volume; the reservation is committed in the same append.
        False when the outcome was already recorded."""
        return await self.settle(
            volume_id,
            Kind.EXTEND,
            request_version,
            lambda v, _: v.complete_extend(request_version),
            succeeded=True,
            meta=meta,
        )

    async def fail_extend(
        self,
        volume_id: str,
        request_version: int,
        reason: str,
        *,
        restore: bool,
        meta: Mapping[str, Any],
    ) -> bool:
        """Compensation; the reservation is released in the same append."""
        return await self.settle(
            volume_id,
            Kind.EXTEND,
            request_version,
            lambda v, _: v.fail_extend(request_version, reason, restore=restore),
            succeeded=False,
            meta=meta,
        )

    async def act(
        self,
        caller: Caller,
        volume_id: str,
        change: Callable[[Volume], T],
        *,
        meta: Mapping[str, Any],
        authorize: Authorize = _allow_all,
    ) -> tuple[Position, T]:
        """The common shape of an action that touches only the volume: load it as the
        caller may see it, authorize, let the aggregate decide, append what it recorded.
        Returns the log position (START when nothing changed) and ``change``'s result."""

        async def attempt() -> tuple[Position, T]:
            volume = await self._visible(caller, volume_id)
            authorize(volume)
            result = change(volume)
            return await self.store.save(volume, meta=meta), result

        verb = str(meta.get("action", "action"))
        return await self._retrying(verb, attempt)

    async def handle(
        self,
        caller: Caller,
        volume_id: str,
        command: VolumeCommand[T],
        *,
        meta: Mapping[str, Any],
        authorize: Authorize = _allow_all,
    ) -> tuple[Position, T]:
        """Run one typed command of the API (``domain.commands``) on the volume: load it as
        the caller may see it, authorize, let the aggregate decide, append what it recorded.
        Returns the log position (START when nothing changed) and the command's result."""
        return await self.act(caller, volume_id, command.run, meta=meta, authorize=authorize)

    async def set_bootable(
        self,
        caller: Caller,
        volume_id: str,
        bootable: bool,
        *,
        meta: Mapping[str, Any],
        authorize: Authorize = _allow_all,
    ) -> Position:
        at, _ = await self.act(
            caller, volume_id, lambda v: v.set_bootable(bootable), meta=meta, authorize=authorize
        )
        return at
