"""Per-project quota limits: verbs of the command service (mixed into Volumes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cinderblock.store.eventstore import Position
from cinderblock.store.plumbing import CommandPlumbing


class QuotaCommands(CommandPlumbing):
    """Per-project quota limits (mixed into Volumes)."""

    async def set_quota_limits(
        self,
        project_id: str,
        limits: Mapping[str, int],
        known: frozenset[str],
        *,
        meta: Mapping[str, Any],
    ) -> Position:
        async def attempt() -> Position:
            quota = await self._quota(project_id)
            quota.set_limits(limits, known)
            return await self.store.save(quota, meta=meta)

        result: Position = await self._retrying("update quota", attempt)
        return result

    async def clear_quota_limits(self, project_id: str, *, meta: Mapping[str, Any]) -> Position:
        async def attempt() -> Position:
            quota = await self._quota(project_id)
            quota.clear_limits()
            return await self.store.save(quota, meta=meta)

        result: Position = await self._retrying("delete quota", attempt)
        return result
