"""The live projection: a batch of events folded into the read-model rows by the one
definition of each event's effect (``steps.STEPS``, run by ``rowstore.Folder``), written
back set-based with the tracking position in one transaction.

Replay and verify (``cinderblock.replay``) and the rows rebuilt from the log
(``cinderblock.audit.state``) run the same steps: there is no second encoding of what an
event does to a row. A row's ``version`` makes every update idempotent: an event at or
below it changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from uuid import UUID

import asyncpg

from cinderblock.readmodels.event import ProjectionEvent
from cinderblock.readmodels.quarantine import SetAside, Stopped, log_set_aside
from cinderblock.readmodels.rowstore import Folder, History
from cinderblock.readmodels.schema import PROJECTED_CHANNEL
from cinderblock.readmodels.steps import STEPS
from cinderblock.readmodels.tables import PROJECTED_TABLES, TableSpec

log = logging.getLogger(__name__)

__all__ = ["STEPS", "ProjectionEvent", "apply_batch", "projected"]


def projected(name: str) -> bool:
    """Whether event ``name`` changes a read-model row."""
    return name in STEPS


async def apply_batch(
    conn: asyncpg.Connection,
    name: str,
    events: Sequence[ProjectionEvent],
    upto: tuple[int, int],
    *,
    specs: Mapping[str, TableSpec],
    history: History,
    undecodable: Sequence[SetAside] = (),
    stopped: Stopped | None = None,
) -> int:
    """Apply ``events`` and move projection ``name``'s tracking row to ``upto`` in one
    transaction. A batch wholly at or before the tracked position is skipped; inside a batch,
    row versions make already-applied events no-ops. Returns how many events were applied.

    No event stops the projection: an event whose step raises, or whose rows PostgreSQL
    refuses, quarantines its aggregate (the folder rebuilds the aggregate's rows from
    ``history`` up to the event before it); its later events are held, and the tracking row
    moves on. Events of aggregates quarantined before are held too, as are those after an
    ``undecodable`` one (an event the caller could not decode). ``stopped`` keeps the
    quarantined aggregates between batches (read from the table when not given).
    """
    cache = stopped if stopped is not None else Stopped()
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT tx_id, position, updated_at FROM tracking WHERE name = $1 FOR UPDATE", name
        )
        if row is not None and (row["tx_id"], row["position"]) >= upto:
            return 0
        since: dict[UUID, int] = dict(
            await cache.refresh(conn, name, row["updated_at"] if row else None)
        )
        folder = Folder(
            conn,
            {t: specs[t] for t in PROJECTED_TABLES},
            STEPS,
            quarantine=name,
            history=history,
            held=since,
        )
        folder.set_aside(undecodable)
        applied = await folder.fold(events)
        await folder.flush()
        stamp = await conn.fetchval(
            """
            INSERT INTO tracking (name, tx_id, position, updated_at) VALUES ($1, $2, $3, now())
            ON CONFLICT (name) DO UPDATE SET tx_id = $2, position = $3, updated_at = now()
            RETURNING updated_at
            """,
            name,
            upto[0],
            upto[1],
        )
        await conn.execute("SELECT pg_notify($1, $2)", PROJECTED_CHANNEL, f"{upto[0]}:{upto[1]}")
    cache.versions, cache.stamp = folder.since, stamp
    log_set_aside(folder.recorded)
    return applied
