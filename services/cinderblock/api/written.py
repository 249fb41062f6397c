"""The rows a command's reply shows: the read model's once it has the write, else the same
row rebuilt from the event log (``cinderblock.audit.state``), so a projection that is behind
never turns a stored command into an error: the log is the truth."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

from cinderblock.api.deps import Deps
from cinderblock.audit import state
from cinderblock.audit.log import aggregate_events
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


async def _rows(d: Deps, aggregate_id: UUID, upto: Position | None = None) -> state.Rows:
    """The rows the aggregate's events leave (those up to ``upto`` only, if given), folded
    by the projection's own steps."""
    async with d.pool.acquire() as conn:
        events = await aggregate_events(conn, [aggregate_id])
        return await state.rows(conn, events, position=upto.position if upto else None)


def _found(row: T | None, aggregate_id: str) -> T:
    if row is None:  # the command stored it: its events exist
        raise LookupError(aggregate_id)
    return row


async def volume_row(d: Deps, at: Position, volume_id: str) -> dict[str, Any]:
    """The volume's row (``queries.get_volume``) after the command at ``at``."""

    async def rebuild() -> dict[str, Any]:
        return _found((await _rows(d, UUID(volume_id))).volume(volume_id, deleted=True), volume_id)

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
    rows = await _rows(d, UUID(volume_id), upto=at)
    return _found(rows.volume(volume_id, deleted=True), volume_id)


async def attachment_rows(
    d: Deps,
    at: Position,
    volume_id: str,
    read: Callable[[], Awaitable[list[dict[str, Any]]]],
) -> list[dict[str, Any]]:
    """The volume's live attachments (``queries.get_attachment`` rows) after the command:
    ``read`` from the read model, else from the log."""

    async def rebuild() -> list[dict[str, Any]]:
        return (await _rows(d, UUID(volume_id))).attachments(volume_id)

    return await _after(d, at, read, rebuild, volume_id=volume_id)


async def snapshot_row(
    d: Deps, at: Position, snapshot_id: str, *, volume_id: str | None = None
) -> dict[str, Any]:
    """The snapshot's row (``queries.get_snapshot``) after the command at ``at``."""

    async def rebuild() -> dict[str, Any]:
        return _found((await _rows(d, UUID(snapshot_id))).snapshot(snapshot_id), snapshot_id)

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
        return _found((await _rows(d, UUID(type_id))).volume_type(type_id), type_id)

    return await _after(d, at, lambda: get_type(d.pool, type_id), rebuild)


async def quota_limits(d: Deps, at: Position, project_id: str) -> dict[str, int]:
    """The project's own quota limits after the command at ``at``."""

    async def read() -> dict[str, int]:
        limits: dict[str, int] = (await get_quota(d.pool, project_id))["limits"]
        return limits

    async def rebuild() -> dict[str, int]:
        qid = quota_id(project_id)
        return (await _rows(d, qid)).quota_limits(qid)

    return await _after(d, at, read, rebuild)
