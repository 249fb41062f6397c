"""os-migrate_volume_completion in the command service: both volumes loaded, the domain
decides (``cinderblock.domain.swap``), both volumes' events appended in one save."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from uuid import uuid4

from cinderblock.domain.swap import swap_attachments, swaps_attachments
from cinderblock.domain.volume import Volume
from cinderblock.store.eventstore import Position
from cinderblock.store.plumbing import CommandPlumbing


class SwapCommands(CommandPlumbing):
    async def migrate_volume_completion(
        self,
        caller: Any,
        volume_id: str,
        new_volume_id: str,
        *,
        error: bool,
        meta: Mapping[str, Any],
        authorize: Callable[[Volume], None],
        authorize_swap: Callable[[Volume, Volume], None],
    ) -> Position:
        """Cinder's order: the source (404), ``authorize`` on it (403), the destination
        (404), the migration rules (400). When the completion moves attachments (Nova's
        swap), ``authorize_swap`` sees both volumes first (the detach and attach rules).
        Returns the log position (START when nothing changed)."""

        async def attempt() -> Position:
            source = await self._visible(caller, volume_id)
            authorize(source)
            same = str(source.id) == new_volume_id
            target = source if same else await self._visible(caller, new_volume_id)
            if swaps_attachments(source, target, error=error):
                authorize_swap(source, target)
                ids = [str(uuid4()) for _ in source.attachments]
                swap_attachments(source, target, ids)
            return await self.store.save(*([source] if same else [source, target]), meta=meta)

        at: Position = await self._retrying("migrate_volume_completion", attempt)
        return at
