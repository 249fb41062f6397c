"""The one settle path of the command service: a saga's outcome of a pending operation
(extend, migration, retype, revert, upload, reimage) recorded on the volume, with the
quota reservation the operation holds committed (success) or released (failure), and
anything else the outcome touches, in one append. An outcome whose request is no longer
pending (the domain's `pending_at` rule: a redelivery, or an older request) records
nothing and answers False."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID

from cinderblock.domain.errors import StaleCommandError
from cinderblock.domain.pending import Kind, PendingOperation
from cinderblock.domain.volume import Volume
from cinderblock.store.plumbing import CommandPlumbing

Record = Callable[[Volume, PendingOperation[Any]], object]
Touch = Callable[[Volume, PendingOperation[Any]], Awaitable[list[Any]]]


class SettleCommands(CommandPlumbing):
    async def settle(
        self,
        volume_id: str,
        kind: Kind,
        request_version: int,
        record: Record,
        *,
        succeeded: bool,
        meta: Mapping[str, Any],
        touch: Touch | None = None,
    ) -> bool:
        """Record ``record``'s outcome of the ``kind`` request made at ``request_version``.

        Args:
            record: asks the volume to record the outcome (``complete_*`` or ``fail_*``).
            succeeded: the reservation the operation holds is committed, else released.
            touch: loads and changes the other aggregates the outcome touches (a revert's
                snapshot); they are appended with the volume.

        Returns False, recording nothing, when the request is no longer pending."""

        async def attempt() -> bool:
            volume = await self.store.load(UUID(volume_id), Volume)
            pending = volume.pending_at(kind, request_version) if volume is not None else None
            if volume is None or pending is None:
                return False
            record(volume, pending)
            touched: list[Any] = [volume]
            if pending.reservation_id is not None:
                quota = await self._quota(volume.project_id)
                reservation = pending.reservation_id
                if quota.commit(reservation) if succeeded else quota.release(reservation):
                    touched.append(quota)
            if touch is not None:
                touched += await touch(volume, pending)
            await self.store.save(*touched, meta=meta)
            return True

        done: bool = await self._retrying(f"settle {kind}", attempt)
        return done

    async def settle_saga_step(
        self, volume_id: str, change: Callable[[Volume], object], *, meta: Mapping[str, Any]
    ) -> bool:
        """Record one saga outcome that the volume guards by itself, outside the pending
        operations (Nova notifications, exports); False when the volume refuses it as stale
        (StaleCommandError: already settled)."""

        async def attempt() -> bool:
            volume = await self.store.load(UUID(volume_id), Volume)
            if volume is None:
                return False
            try:
                change(volume)
            except StaleCommandError:
                return False
            await self.store.save(volume, meta=meta)
            return True

        done: bool = await self._retrying("saga outcome", attempt)
        return done
