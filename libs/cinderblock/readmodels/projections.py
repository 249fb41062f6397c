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
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from uuid import UUID

import asyncpg

from cinderblock.readmodels.event import ProjectionEvent
from cinderblock.readmodels.folds import Row
from cinderblock.readmodels.quarantine import (
    SetAside,
    Stopped,
    describe,
    log_set_aside,
    retry_will_fix,
)
from cinderblock.readmodels.rowstore import Folder, History, Key
from cinderblock.readmodels.schema import PROJECTED_CHANNEL
from cinderblock.readmodels.steps import STEPS
from cinderblock.readmodels.tables import PROJECTED_TABLES, TableSpec

log = logging.getLogger(__name__)

__all__ = ["STEPS", "LiveRows", "ProjectionEvent", "apply_batch", "projected"]


class LiveRows:
    """The rows the live projector wrote, kept between its batches so a batch need not read
    back what the previous one wrote: valid only while nobody else writes the tables. Every
    batch first takes the tracking row; when it is not as this projector left it
    (``Stopped.written_by_us``: a replay swapped the tables, another projector took over
    meanwhile) the rows are dropped, as they are after a batch that failed."""

    def __init__(self, limit: int = 20_000) -> None:
        self.rows: OrderedDict[Key, Row | None] = OrderedDict()
        self.limit = limit

    def valid(self, ours: bool) -> OrderedDict[Key, Row | None]:
        if not ours:
            self.rows.clear()
        return self.rows

    def trim(self) -> None:
        rows = self.rows
        while len(rows) > self.limit:
            rows.popitem(last=False)

    def drop(self) -> None:
        self.rows.clear()


# Move the tracking row and tell read-your-writes waiters, in one round trip.
_TRACK = """
WITH moved AS (
    INSERT INTO tracking (name, tx_id, position, updated_at) VALUES ($1, $2, $3, now())
    ON CONFLICT (name) DO UPDATE SET tx_id = $2, position = $3, updated_at = now()
    RETURNING updated_at
)
SELECT updated_at FROM moved, pg_notify($4::text, $2::text || ':' || $3::text)
"""


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
    live: LiveRows | None = None,
) -> int:
    """Apply ``events`` and move projection ``name``'s tracking row to ``upto`` in one
    transaction. A batch wholly at or before the tracked position is skipped; inside a batch,
    row versions make already-applied events no-ops. Returns how many events were applied.

    No event stops the projection: an event whose step raises, or whose rows PostgreSQL
    refuses, quarantines its aggregate (the folder rebuilds the aggregate's rows from
    ``history`` up to the event before it); its later events are held, and the tracking row
    moves on. Events of aggregates quarantined before are held too, as are those after an
    ``undecodable`` one (an event the caller could not decode). ``stopped`` keeps the
    quarantined aggregates between batches (read from the table when not given); ``live``
    the rows written by the batches before (``LiveRows``).
    """
    cache = stopped if stopped is not None else Stopped()
    live = live if live is not None else LiveRows()
    args = (conn, name, events, upto, specs, history, undecodable, cache, live)
    try:
        return await _apply(*args, optimistic=True)
    except BaseException as err:
        live.drop()  # rolled back: the rows in memory may be ahead of the tables
        if not isinstance(err, Exception) or retry_will_fix(err):
            raise
        log.warning(
            "projection batch refused, folding it again row by row",
            extra={"consumer": name, "error": describe(err)},
        )
    try:
        return await _apply(*args, optimistic=False)
    except BaseException:
        live.drop()
        raise


async def _apply(
    conn: asyncpg.Connection,
    name: str,
    events: Sequence[ProjectionEvent],
    upto: tuple[int, int],
    specs: Mapping[str, TableSpec],
    history: History,
    undecodable: Sequence[SetAside],
    cache: Stopped,
    live: LiveRows,
    *,
    optimistic: bool,
) -> int:
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT tx_id, position, updated_at FROM tracking WHERE name = $1 FOR UPDATE", name
        )
        if row is not None and (row["tx_id"], row["position"]) >= upto:
            return 0
        tracked = row["updated_at"] if row else None
        ours = cache.written_by_us(tracked)
        since: dict[UUID, int] = dict(await cache.refresh(conn, name, tracked))
        folder = Folder(
            conn,
            {t: specs[t] for t in PROJECTED_TABLES},
            STEPS,
            quarantine=name,
            history=history,
            held=since,
            rows=live.valid(ours),
            optimistic=optimistic,
        )
        folder.set_aside(undecodable)
        applied = await folder.fold(events)
        await folder.flush()
        stamp = await conn.fetchval(_TRACK, name, upto[0], upto[1], PROJECTED_CHANNEL)
    cache.versions, cache.stamp = folder.since, stamp
    live.trim()
    log_set_aside(folder.recorded)
    return applied
