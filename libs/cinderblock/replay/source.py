"""The event log in consumer order, page by page (keyset on ``(tx_id, position)``), with
an optional upper bound, the next page fetched while the current one is folded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg

from cinderblock.store.eventstore import Position

# Settled rows only, exactly as the live tail reads them: a row whose transaction is older
# than every running one can never be overtaken by a later commit.
_PAGE = """
SELECT tx_id::text::bigint, position, originator_id, originator_version, topic, state,
       meta->>'request_id', meta->>'project_id'
FROM events
WHERE (tx_id, position) > ($1::text::xid8, $2)
  AND (tx_id, position) <= ($3::text::xid8, $4)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
  {partition}
ORDER BY events.tx_id, events.position
LIMIT $5
"""
# ``events.``: a bare ``tx_id`` would name the output column (the bigint cast), which no
# index orders, and PostgreSQL would sort every remaining row for each page.
# One of ``$7`` disjoint shares of the aggregates (by the last byte of their id): every
# read-model row is changed by the events of one aggregate only, so shares fold apart.
_PARTITION = "AND get_byte(uuid_send(originator_id), 15) % $6 = $7"
# The planner takes that filter to keep 0.5 % of the rows (its default for an expression),
# so it expects no page to fill from the index and plans a (parallel) scan and sort of
# every remaining row for each page: 300 ms per page at the start of a 1,000,000-event
# log, 7 s of PostgreSQL CPU to read it in two shares against 1 s unfiltered. The index in
# log order, filtered, and stopped at the page's end takes 4-5 ms a page.
_SHARE_PLAN = (
    ("enable_seqscan", "off"),
    ("enable_bitmapscan", "off"),
    ("enable_sort", "off"),
    ("max_parallel_workers_per_gather", "0"),
    ("jit", "off"),
)

END = Position(2**63 - 1, 2**63 - 1)


async def pages(
    conn: asyncpg.Connection,
    after: Position,
    upto: Position | None = None,
    *,
    size: int = 5000,
    share: tuple[int, int] | None = None,
) -> AsyncIterator[list[asyncpg.Record]]:
    """Pages of ``(tx_id, position, originator_id, originator_version, topic, state,
    request id, request project)`` records (the last two from the event's meta) after
    ``after`` up to and including ``upto`` (default: the settled end); ``share=(k, n)``:
    only the events of the k-th of n shares of the aggregates."""
    bound = upto or END
    if share:  # the connection's until the pages end (reset in ``finally``)
        await conn.execute("; ".join(f"SET {name} = {value}" for name, value in _SHARE_PLAN))
    stmt = await conn.prepare(_PAGE.format(partition=_PARTITION if share else ""))
    extra = (share[1], share[0]) if share else ()

    async def fetch(start: Position) -> list[asyncpg.Record]:
        return await stmt.fetch(
            str(start.tx_id), start.position, str(bound.tx_id), bound.position, size, *extra
        )

    pending = asyncio.ensure_future(fetch(after))
    try:
        while True:
            page = await pending
            if not page:
                return
            last = page[-1]
            if len(page) == size:
                pending = asyncio.ensure_future(fetch(Position(last[0], last[1])))
                await asyncio.sleep(0)  # let it send the query before the caller folds
            else:
                pending = None  # type: ignore[assignment]
            yield page
            if pending is None:
                return
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
        if share and not conn.is_closed():
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                await conn.execute("; ".join(f"RESET {name}" for name, _ in _SHARE_PLAN))


async def event_count(conn: asyncpg.Connection, after: Position, upto: Position | None) -> int:
    bound = upto or END
    return await conn.fetchval(
        "SELECT count(*) FROM events WHERE (tx_id, position) > ($1::text::xid8, $2) "
        "AND (tx_id, position) <= ($3::text::xid8, $4)",
        str(after.tx_id),
        after.position,
        str(bound.tx_id),
        bound.position,
    )


async def settled_end(conn: asyncpg.Connection) -> Position:
    """The last settled position: every row at or before it is committed and final."""
    row = await conn.fetchrow(
        "SELECT tx_id::text::bigint AS tx_id, position FROM events "
        "WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) "
        "ORDER BY events.tx_id DESC, events.position DESC LIMIT 1"
    )
    return Position(row["tx_id"], row["position"]) if row else Position(0, 0)


async def history(
    conn: asyncpg.Connection, aggregate_id: UUID, upto: Position
) -> list[asyncpg.Record]:
    """One aggregate's events up to ``upto`` (settled: the rows of a page already read), in
    the same layout as ``pages``."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT tx_id::text::bigint, position, originator_id, originator_version, topic, state,
               meta->>'request_id', meta->>'project_id'
        FROM events
        WHERE originator_id = $1 AND (tx_id, position) <= ($2::text::xid8, $3)
        ORDER BY events.tx_id, events.position
        """,
        aggregate_id,
        str(upto.tx_id),
        upto.position,
    )
    return rows
