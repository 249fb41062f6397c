"""The rows a command's reply shows: the read model's once it has the write, else the same
row rebuilt from the event log (``cinderblock.audit.state``), so a projection that is behind
never turns a stored command into an error: the log is the truth."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from cinderblock.api.deps import Deps
from cinderblock.audit import state
from cinderblock.audit.log import LoggedEvent, aggregate_events
from cinderblock.domain.quota import quota_id
from cinderblock.readmodels.queries import get_quota, get_snapshot, get_type, get_volume
from cinderblock.store.eventstore import Position

T = TypeVar("T")


async def _after(
    d: Deps,
    at: Position,
    read: Callable[[], Awaitable[T | None]],
    rebuild: Callable[[], Awaitable[T]],
    *,
    volume_id: str | None = None,
) -> T:
    if await d.read_your_write(at, volume_id=volume_id):
        row = await read()
        if row is not None:
            return row
    return await rebuild()


async def _events(d: Deps, aggregate_id: UUID) -> list[LoggedEvent]:
    async with d.pool.acquire() as conn:
        return await aggregate_events(conn, [aggregate_id])


async def _volume(
    d: Deps, volume_id: str, upto: Position | None = None
) -> tuple[Any, datetime | None]:
    """The Volume aggregate as its events leave it (those up to ``upto`` only, if given),
    and its row's ``updated_at``."""
    events = await _events(d, UUID(volume_id))
    if upto is not None:
        events = [e for e in events if e.position <= upto.position]
    return state.rebuild(events)


async def volume_row(d: Deps, at: Position, volume_id: str) -> dict[str, Any]:
    """The volume's row (``queries.get_volume``) after the command at ``at``."""

    async def rebuild() -> dict[str, Any]:
        return state.volume_row(*await _volume(d, volume_id))

    return await _after(
        d,
        at,
        lambda: get_volume(d.pool, volume_id, project_id=None),
        rebuild,
        volume_id=volume_id,
    )


async def created_volume_row(d: Deps, at: Position, volume_id: str) -> dict[str, Any]:
    """The new volume's row as its create left it (``creating``, as Cinder answers), even
    when the saga's completion is already in the log. Waits for the read model first, so a
    GET after the answer finds the volume."""
    await d.read_your_write(at, volume_id=volume_id)
    return state.volume_row(*await _volume(d, volume_id, upto=at))


async def attachment_rows(
    d: Deps,
    at: Position,
    volume_id: str,
    read: Callable[[], Awaitable[list[dict[str, Any]]]],
) -> list[dict[str, Any]]:
    """The volume's live attachments (``queries.get_attachment`` rows) after the command:
    ``read`` from the read model, else from the log."""

    async def rebuild() -> list[dict[str, Any]]:
        volume, _ = await _volume(d, volume_id)
        return state.attachment_rows(volume)

    return await _after(d, at, read, rebuild, volume_id=volume_id)


async def snapshot_row(
    d: Deps, at: Position, snapshot_id: str, *, volume_id: str | None = None
) -> dict[str, Any]:
    """The snapshot's row (``queries.get_snapshot``) after the command at ``at``."""

    async def rebuild() -> dict[str, Any]:
        row = state.snapshot_row(await _events(d, UUID(snapshot_id)))
        if row is None:  # the command stored it: its events exist
            raise LookupError(snapshot_id)
        return row

    return await _after(
        d,
        at,
        lambda: get_snapshot(d.pool, snapshot_id, project_id=None),
        rebuild,
        volume_id=volume_id,
    )


async def type_row(d: Deps, at: Position, type_id: str) -> dict[str, Any]:
    """The volume type's row (``queries.get_type``) after the command at ``at``."""

    async def rebuild() -> dict[str, Any]:
        row = state.type_row(await _events(d, UUID(type_id)))
        if row is None:  # the command stored it: its events exist
            raise LookupError(type_id)
        return row

    return await _after(d, at, lambda: get_type(d.pool, type_id), rebuild)


async def quota_limits(d: Deps, at: Position, project_id: str) -> dict[str, int]:
    """The project's own quota limits after the command at ``at``."""

    async def read() -> dict[str, int]:
        limits: dict[str, int] = (await get_quota(d.pool, project_id))["limits"]
        return limits

    async def rebuild() -> dict[str, int]:
        quota, _ = state.rebuild(await _events(d, quota_id(project_id)), table="quotas")
        return dict(getattr(quota, "limits", {})) if quota is not None else {}

    return await _after(d, at, read, rebuild)
