"""Projections: each event's effect on the read-model tables, as SQL.

One function per event name, applied in the transaction that also moves the tracking row.
A row's ``version`` makes every update idempotent: an event at or below it changes nothing.
The same functions serve live projection and replay from position 0.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from cinderblock.readmodels.schema import PROJECTED_CHANNEL


@dataclass(frozen=True)
class ProjectionEvent:
    """What a projection needs of one stored event."""

    name: str  # e.g. "Volume.Extended"
    aggregate_id: UUID
    version: int
    timestamp: datetime
    data: Mapping[str, Any]


Apply = Callable[[asyncpg.Connection, ProjectionEvent], Awaitable[None]]

_UPDATE_GUARD = "WHERE id = $1 AND version < $2"


async def _volume_created(conn: asyncpg.Connection, e: ProjectionEvent) -> None:
    d = e.data
    await conn.execute(
        """
        INSERT INTO volumes (id, project_id, user_id, name, description, size, status,
            availability_zone, volume_type_id, volume_type_name, bootable, multiattach,
            metadata, created_at, version)
        VALUES ($1, $2, $3, $4, $5, $6, 'creating', $7, $8, $9, $10, $11, $12::jsonb, $13, $14)
        ON CONFLICT (id) DO NOTHING
        """,
        e.aggregate_id,
        d["project_id"],
        d["user_id"],
        d["name"],
        d["description"],
        d["size_gb"],
        d["availability_zone"],
        d["volume_type_id"],
        d["volume_type_name"],
        d["bootable"],
        d["multiattach"],
        json.dumps(d["metadata"]),
        e.timestamp,
        e.version,
    )


def _set(assignments: str, *fields: str) -> Apply:
    """A projection that runs ``UPDATE volumes SET <assignments>`` with the event's fields
    as $4, $5, … ($3 is the event time)."""
    sql = f"UPDATE volumes SET {assignments}, updated_at = $3, version = $2 {_UPDATE_GUARD}"

    async def apply(conn: asyncpg.Connection, e: ProjectionEvent) -> None:
        await conn.execute(
            sql, e.aggregate_id, e.version, e.timestamp, *(e.data[f] for f in fields)
        )

    return apply


async def _volume_deleted(conn: asyncpg.Connection, e: ProjectionEvent) -> None:
    await conn.execute(
        f"UPDATE volumes SET status = 'deleted', deleted = true, deleted_at = $3, "
        f"updated_at = $3, version = $2 {_UPDATE_GUARD}",
        e.aggregate_id,
        e.version,
        e.timestamp,
    )


VOLUME_PROJECTIONS: dict[str, Apply] = {
    "Volume.Created": _volume_created,
    "Volume.CreateCompleted": _set("status = 'available', host = $4", "host"),
    "Volume.CreateFailed": _set("status = 'error'"),
    "Volume.ExtendRequested": _set("previous_status = status, status = 'extending'"),
    "Volume.Extended": _set("size = $4, status = $5", "new_size_gb", "status"),
    "Volume.ExtendFailed": _set("status = $4", "status"),
    "Volume.BootableSet": _set("bootable = $4", "bootable"),
    "Volume.DeleteRequested": _set("previous_status = status, status = 'deleting'"),
    "Volume.DeleteFailed": _set("status = 'error_deleting'"),
    "Volume.Deleted": _volume_deleted,
}


async def apply_batch(
    conn: asyncpg.Connection,
    name: str,
    events: Sequence[ProjectionEvent],
    upto: tuple[int, int],
) -> int:
    """Apply ``events`` and move projection ``name``'s tracking row to ``upto`` in one
    transaction. A batch wholly at or before the tracked position is skipped; inside a batch,
    row versions make already-applied events no-ops. Returns how many events were applied."""
    applied = 0
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT tx_id, position FROM tracking WHERE name = $1 FOR UPDATE", name
        )
        if row is not None and (row["tx_id"], row["position"]) >= upto:
            return 0
        for event in events:
            projection = VOLUME_PROJECTIONS.get(event.name)
            if projection is not None:
                await projection(conn, event)
                applied += 1
        await conn.execute(
            """
            INSERT INTO tracking (name, tx_id, position, updated_at) VALUES ($1, $2, $3, now())
            ON CONFLICT (name) DO UPDATE SET tx_id = $2, position = $3, updated_at = now()
            """,
            name,
            upto[0],
            upto[1],
        )
        await conn.execute("SELECT pg_notify($1, $2)", PROJECTED_CHANNEL, f"{upto[0]}:{upto[1]}")
    return applied
