"""Folding the log into side tables: the events a rebuild wants, the quarantine it keeps,
and the folder it folds with (used by one rebuild process and by each worker of
``parallel``)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Sequence
from uuid import UUID

import asyncpg

from cinderblock.readmodels.event import ProjectionEvent
from cinderblock.readmodels.quarantine import SetAside, stopped_at
from cinderblock.readmodels.rowstore import Folder
from cinderblock.readmodels.steps import STEPS
from cinderblock.readmodels.tables import load_specs, q
from cinderblock.replay.decode import Decoder
from cinderblock.replay.session import PROJECTOR
from cinderblock.replay.source import history
from cinderblock.store.eventstore import Position

# Rows kept in memory between batches while rebuilding (write-behind cache).
KEEP_ROWS = 60_000
PAGE_SIZE = 5_000


# The cyclic collector's thresholds while folding. A fold allocates millions of short-lived
# objects (freed by reference counting) next to a large live set (the row cache, each
# volume's aggregate for the ledger), which the default thresholds make the collector walk
# again and again: 40 % of a worker's CPU on a 300,000-event log. Fewer young collections
# (each one at 50,000 allocations), the same rule for the old ones.
FOLD_GC_THRESHOLDS = (50_000, 20, 100)


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """The collector at ``FOLD_GC_THRESHOLDS`` meanwhile, what exists before frozen (never
    walked again by a full collection); then as it was."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*FOLD_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def wanted_events(tables: Sequence[str]) -> list[str]:
    """The events whose projection changes one of ``tables``."""
    return [n for n, steps in STEPS.items() if any(s.table in tables for s in steps)]


# The tables each kind of aggregate's events change ("Volume": volumes and attachments).
KIND_TABLES: dict[str, frozenset[str]] = {}
for _name, _steps in STEPS.items():
    _kind = _name.partition(".")[0]
    KIND_TABLES[_kind] = KIND_TABLES.get(_kind, frozenset()) | {s.table for s in _steps}


def redecided(event_name: str, tables: Sequence[str]) -> bool:
    """Whether a rebuild of ``tables`` decides anew on a quarantine that began with
    ``event_name``: it rebuilds every table that kind of aggregate changes."""
    return KIND_TABLES.get(event_name.partition(".")[0], frozenset()) <= set(tables)


async def kept_quarantine(conn: asyncpg.Connection, tables: Sequence[str]) -> dict[UUID, int]:
    """The projector's quarantined aggregates a rebuild of ``tables`` keeps (it does not
    rebuild all their tables): it holds their events too, so their rows stay as live."""
    rows = await conn.fetch(
        "SELECT aggregate_id, version, event_name FROM quarantine WHERE consumer = $1 AND NOT held",
        PROJECTOR,
    )
    return {r["aggregate_id"]: r["version"] for r in rows if not redecided(r["event_name"], tables)}


async def aggregate_history(
    conn: asyncpg.Connection, decode: Decoder, aggregate_id: UUID, upto: Position, consumer: str
) -> list[ProjectionEvent | SetAside]:
    """One aggregate's events up to ``upto`` in version order, those that cannot be decoded
    as ``consumer``'s set-asides: what a folder's repair of a quarantined aggregate reads."""
    events, undecodable = decode.rows(await history(conn, aggregate_id, upto), consumer)
    items: list[ProjectionEvent | SetAside] = [*events, *undecodable]  # type: ignore[list-item]
    return sorted(items, key=lambda item: item.version)


async def new_folder(
    conn: asyncpg.Connection,
    schema: str,
    tables: Sequence[str],
    decode: Decoder,
    horizon: Callable[[], Position],
    *,
    fresh: bool = False,
    keep: int = KEEP_ROWS,
) -> Folder:
    """A folder into ``schema``'s side tables that quarantines what it cannot apply (see
    ``rowstore.Folder``), holding the aggregates quarantined so far: those the rebuild
    keeps and those already set aside in the side schema."""
    specs = await load_specs(conn, schema, tables)
    held = await kept_quarantine(conn, tables)
    held.update(await stopped_at(conn, PROJECTOR, table=f"{q(schema)}.quarantine"))

    async def events_of(aggregate_id: UUID) -> list[ProjectionEvent | SetAside]:
        return await aggregate_history(conn, decode, aggregate_id, horizon(), PROJECTOR)

    return Folder(
        conn,
        specs,
        STEPS,
        schema=schema,
        keep=keep,
        fresh=fresh,
        quarantine=PROJECTOR,
        history=events_of,
        held=held,
    )
