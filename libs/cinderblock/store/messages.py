"""Message verbs of the command service: deleting a user message is recorded on the
aggregate of the resource it is about (``domain.user_messages``), even a deleted one (a
message outlives its volume, as in Cinder)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.user_messages import MessageNotFoundError
from cinderblock.domain.volume import Volume
from cinderblock.store.eventstore import Position
from cinderblock.store.plumbing import CommandPlumbing


class MessageCommands(CommandPlumbing):
    """Mixed into Volumes, whose plumbing (store, _retrying) it uses."""

    async def delete_message(
        self,
        holder: type[Volume] | type[Snapshot],
        resource_id: UUID,
        message_id: str,
        *,
        meta: Mapping[str, Any],
    ) -> Position:
        """Record that message ``message_id`` of the ``holder`` aggregate ``resource_id`` is
        deleted; MessageNotFoundError when it already is, or the aggregate has no events."""

        async def attempt() -> Position:
            aggregate = await self.store.load(resource_id, holder)
            if aggregate is None:
                raise MessageNotFoundError(message_id)
            aggregate.delete_message(message_id)
            return await self.store.save(aggregate, meta=meta)

        at: Position = await self._retrying("message:delete", attempt)
        return at
