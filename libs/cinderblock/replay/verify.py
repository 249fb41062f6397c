"""Rebuild into side tables and compare them with the live read models, column by column.

Nothing is ignored: every column of the projected tables is derived from events (times are
event timestamps, never ``now()``), so a live row must equal its rebuilt row exactly. The
process-local state lives outside the projected tables (``tracking.updated_at``,
``backend_pools``, ``services``, ``dead_letters``) and is not compared.

Quarantined aggregates (``cinderblock.readmodels.quarantine``) are listed, every consumer's,
and for the projector's what a replay with this code would do about each: quarantine it
again (the rows stay as they are, so they compare equal) or apply it (the rows differ).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from cinderblock.readmodels.quarantine import Quarantined, listing
from cinderblock.readmodels.tables import PROJECTED_TABLES, q
from cinderblock.replay.folding import fewer_collections, redecided
from cinderblock.replay.rebuild import Progress, Rebuild, Rebuilt
from cinderblock.replay.session import PROJECTOR, connections, projector_paused

# Columns that may legitimately differ between a live row and its rebuilt twin: none.
IGNORED_COLUMNS: frozenset[str] = frozenset()

_ABSENT = "<no row>"


@dataclass(frozen=True)
class Difference:
    table: str
    key: str
    column: str
    live: Any
    rebuilt: Any

    def __str__(self) -> str:
        return (
            f"{self.table} {self.key} {self.column}: live={json.dumps(self.live)} "
            f"rebuilt={json.dumps(self.rebuilt)}"
        )


@dataclass
class Verified:
    rebuilt: Rebuilt
    rows: dict[str, int] = field(default_factory=dict)  # rows compared per table
    differences: list[Difference] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)  # live, every consumer's
    rebuild_quarantined: list[Quarantined] = field(default_factory=list)  # the projector's

    @property
    def identical(self) -> bool:
        return not self.differences

    def replay_would(self, entry: Quarantined) -> str | None:
        """For one of the projector's quarantined aggregates: what a replay would do."""
        if entry.consumer != PROJECTOR:
            return None
        if not redecided(entry.event_name, self.rebuilt.tables):
            return "keep it (not every table of the aggregate is rebuilt)"
        again = {(e.aggregate_id, e.version) for e in self.rebuild_quarantined}
        if (entry.aggregate_id, entry.version) in again:
            return "quarantine it again"
        return "apply it"

    def new_in_rebuild(self) -> list[Quarantined]:
        """What a replay would quarantine that the live projector has not."""
        live = {(e.aggregate_id, e.version) for e in self.quarantined if e.consumer == PROJECTOR}
        return [e for e in self.rebuild_quarantined if (e.aggregate_id, e.version) not in live]


async def diff_table(conn: asyncpg.Connection, side: str, table: str) -> list[Difference]:
    rows = await conn.fetch(
        f"""
        SELECT coalesce(l.id, r.id)::text AS key, to_jsonb(l)::text AS live,
               to_jsonb(r)::text AS rebuilt
        FROM public.{q(table)} l FULL JOIN {q(side)}.{q(table)} r ON l.id = r.id
        WHERE to_jsonb(l) IS DISTINCT FROM to_jsonb(r)
        ORDER BY 1
        """
    )
    found = []
    for r in rows:
        live = json.loads(r["live"]) if r["live"] is not None else None
        rebuilt = json.loads(r["rebuilt"]) if r["rebuilt"] is not None else None
        if live is None or rebuilt is None:
            found.append(
                Difference(
                    table,
                    r["key"],
                    "*",
                    _ABSENT if live is None else "present",
                    _ABSENT if rebuilt is None else "present",
                )
            )
            continue
        for column in sorted(set(live) | set(rebuilt)):
            if column in IGNORED_COLUMNS:
                continue
            if live.get(column, _ABSENT) != rebuilt.get(column, _ABSENT):
                found.append(
                    Difference(
                        table,
                        r["key"],
                        column,
                        live.get(column, _ABSENT),
                        rebuilt.get(column, _ABSENT),
                    )
                )
    return found


async def verify(
    dsn: str,
    tables: Sequence[str] = PROJECTED_TABLES,
    *,
    progress: Progress | None = None,
    workers: int | None = None,
) -> Verified:
    """Rebuild up to the live projector's position and diff; the live projector waits at
    its next batch only while the last events are folded and the tables compared."""
    async with connections(dsn, exclusive=True) as (conn, reader), projector_paused(conn):
        rebuild = Rebuild(conn, reader, tables, progress=progress, dsn=dsn, workers=workers)
        result = Verified(rebuild.result)
        try:
            await rebuild.prepare()
            with fewer_collections():
                await rebuild.catch_up_unlocked(own_log=False)
            async with conn.transaction():
                await rebuild.lock_and_catch_up(own_log=False)
                for table in rebuild.result.tables:
                    result.rows[table] = await conn.fetchval(
                        f"SELECT count(*) FROM public.{q(table)}"
                    )
                    result.differences.extend(await diff_table(conn, rebuild.result.schema, table))
                result.quarantined = await listing(conn)
                side = f"{q(rebuild.result.schema)}.quarantine"
                result.rebuild_quarantined = await listing(conn, PROJECTOR, table=side)
                await rebuild.count_quarantined()
        finally:
            await rebuild.drop()
        return result
