"""Rows of the projected tables in memory: read from PostgreSQL, folded by the projection
steps, written back set-based (one ``INSERT … SELECT FROM unnest … ON CONFLICT (id) DO
UPDATE`` per table).

The column set of each table comes from the catalog (so a column added to the DDL needs no
change here); a new row starts from the columns' defaults, evaluated once.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from uuid import UUID

import asyncpg

from cinderblock.readmodels.folds import JSON_NULL, Row, Step, parts_of
from cinderblock.readmodels.projections import ProjectionEvent

# The tables the projector derives from events (everything else in the schema is either
# operational state or bookkeeping: backend_pools, services, tracking, dead_letters).
PROJECTED_TABLES = ("volumes", "attachments", "snapshots", "volume_types", "quotas")

Key = tuple[str, UUID]

_COLUMNS = """
SELECT c.relname AS tbl, a.attname AS col, format_type(a.atttypid, a.atttypmod) AS typ,
       pg_get_expr(d.adbin, d.adrelid) AS dflt
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    jsonb: frozenset[str]
    defaults: Mapping[str, Any]

    def new_row(self) -> Row:
        return {c: self.defaults.get(c) for c in self.columns}

    def select_sql(self, schema: str) -> str:
        cols = ", ".join(q(c) for c in self.columns)
        return f"SELECT {cols} FROM {q(schema)}.{q(self.name)} WHERE id = ANY($1::uuid[])"

    def upsert_sql(self, schema: str) -> str:
        cols = ", ".join(q(c) for c in self.columns)
        arrays = ", ".join(
            f"${i + 1}::{'text' if c in self.jsonb else t}[]"
            for i, (c, t) in enumerate(zip(self.columns, self.types, strict=True))
        )
        aliases = ", ".join(f"c{i}" for i in range(len(self.columns)))
        picked = ", ".join(
            f"c{i}::jsonb" if c in self.jsonb else f"c{i}" for i, c in enumerate(self.columns)
        )
        updates = ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in self.columns if c != "id")
        return (
            f"INSERT INTO {q(schema)}.{q(self.name)} ({cols}) SELECT {picked} "
            f"FROM unnest({arrays}) AS u({aliases}) ON CONFLICT (id) DO UPDATE SET {updates}"
        )

    def decode(self, record: Mapping[str, Any]) -> Row:
        row = dict(record)
        for c in self.jsonb:
            text = row[c]
            if text is not None:
                value = json.loads(text)
                row[c] = JSON_NULL if value is None else value
        return row

    def columns_of(self, rows: Sequence[Row]) -> list[list[Any]]:
        """``rows`` as one list per column, jsonb encoded as text."""
        if not rows:
            return [[] for _ in self.columns]
        picked = map(itemgetter(*self.columns), rows)  # a tuple per row, in C
        out = []
        for c, values in zip(self.columns, zip(*picked, strict=True), strict=True):
            out.append([_encode_json(v) for v in values] if c in self.jsonb else list(values))
        return out


def _encode_json(value: Any) -> str | None:
    if value is None:
        return None
    if value is JSON_NULL:
        return "null"
    return json.dumps(value)


async def load_specs(
    conn: asyncpg.Connection, schema: str = "public", tables: Iterable[str] = PROJECTED_TABLES
) -> dict[str, TableSpec]:
    """The projected tables of ``schema`` as the catalog describes them."""
    wanted = list(tables)
    found: dict[str, list[asyncpg.Record]] = {}
    for r in await conn.fetch(_COLUMNS, schema, wanted):
        found.setdefault(r["tbl"], []).append(r)
    missing = [t for t in wanted if t not in found]
    if missing:
        raise LookupError(f"no table {missing} in schema {schema}")
    specs = {}
    for table, cols in found.items():
        jsonb = frozenset(r["col"] for r in cols if r["typ"] == "jsonb")
        with_default = [r for r in cols if r["dflt"] is not None]
        defaults: dict[str, Any] = {}
        if with_default:
            exprs = ", ".join(f"{r['dflt']} AS {q(r['col'])}" for r in with_default)
            values = dict(await conn.fetchrow(f"SELECT {exprs}"))
            for c, v in values.items():
                defaults[c] = json.loads(v) if c in jsonb and v is not None else v
        specs[table] = TableSpec(
            name=table,
            columns=tuple(r["col"] for r in cols),
            types=tuple(r["typ"] for r in cols),
            jsonb=jsonb,
            defaults=defaults,
        )
    return specs


class Folder:
    """Folds events into rows of ``schema``'s projected tables.

    Rows a batch needs are read once (misses only), changed in memory and written back on
    ``flush``. ``keep`` rows stay cached between batches (replay: write-behind, so a row
    changed by many events is written once); ``keep=0`` is the live projector's mode.
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        specs: Mapping[str, TableSpec],
        projections: Mapping[str, tuple[Step, ...]],
        *,
        schema: str = "public",
        keep: int = 0,
        fresh: bool = False,
    ) -> None:
        self.conn = conn
        self.schema = schema
        self.specs = specs
        self.keep = keep
        # Only the steps on tables this folder owns (``--projection`` picks a subset).
        # Per event name, its steps on the tables this folder owns (``--projection`` picks
        # a subset), compiled to (table, kind, ids or None for the aggregate's own row,
        # the changes to run in order).
        self.plans: dict[str, tuple[tuple[str, int, Any, tuple[Any, ...]], ...]] = {}
        for name, steps in projections.items():
            plan = tuple(
                (s.table, s.kind_code, None if s.own else s.ids, parts_of(s.change))
                for s in steps
                if s.table in specs
            )
            if plan:
                self.plans[name] = plan
        self.rows: OrderedDict[Key, Row | None] = OrderedDict()
        # False while the tables are known to hold no row this folder did not create
        # (a fresh side table before the first eviction): misses need no lookup.
        self._may_exist = not fresh
        self.dirty: set[Key] = set()
        self._upserts = {t: spec.upsert_sql(schema) for t, spec in specs.items()}
        self._selects = {t: spec.select_sql(schema) for t, spec in specs.items()}

    def _new_row(self, table: str) -> Row:
        return self.specs[table].new_row()

    async def _load_missing(self, events: Sequence[ProjectionEvent]) -> None:
        """Read the rows ``events`` touch that are not in memory (``None``: no such row)."""
        rows, plans = self.rows, self.plans
        wanted: dict[str, set[UUID]] = {}
        for e in events:
            for table, _kind, ids, _changes in plans.get(e.name, ()):
                for rid in (e.aggregate_id,) if ids is None else ids(e):
                    if (table, rid) not in rows:
                        wanted.setdefault(table, set()).add(rid)
        for table, missing in wanted.items():
            decode = self.specs[table].decode
            found = {
                r["id"]: decode(r)
                for r in await self.conn.fetch(self._selects[table], list(missing))
            }
            for rid in missing:
                rows[(table, rid)] = found.get(rid)

    async def fold(self, events: Sequence[ProjectionEvent]) -> int:
        """Apply ``events`` in order (the step semantics of ``folds``); returns how many
        had a projection."""
        if self._may_exist:
            await self._load_missing(events)
        rows, plans, mark, new_row = self.rows, self.plans, self.dirty.add, self._new_row
        applied = 0
        for e in events:
            plan = plans.get(e.name)
            if plan is None:
                continue
            applied += 1
            for table, kind, ids, changes in plan:
                for rid in (e.aggregate_id,) if ids is None else ids(e):
                    key = (table, rid)
                    row = rows.get(key)
                    if kind == 1:  # update: the aggregate's row, if older than the event
                        if row is None or row["version"] >= e.version:
                            continue
                        for change in changes:
                            change(row, e)
                        row["updated_at"] = e.timestamp
                        row["version"] = e.version
                    elif kind == 0:  # insert, unless the row exists
                        if row is not None:
                            continue
                        row = new_row(table)
                        row["id"] = rid
                        for change in changes:
                            change(row, e)
                        rows[key] = row
                    else:  # touch rows that are not deleted
                        if row is None or row["deleted"]:
                            continue
                        for change in changes:
                            change(row, e)
                    mark(key)
        if self.keep and len(rows) > self.keep:
            await self._trim()
        return applied

    async def flush(self) -> int:
        """Write every changed row; returns how many."""
        by_table: dict[str, list[Row]] = {}
        for key in self.dirty:
            row = self.rows[key]
            if row is not None:
                by_table.setdefault(key[0], []).append(row)
        for table, rows in by_table.items():
            spec = self.specs[table]
            await self.conn.execute(self._upserts[table], *spec.columns_of(rows))
        written = len(self.dirty)
        self.dirty.clear()
        return written

    async def _trim(self) -> None:
        """Write everything changed, then forget the oldest rows down to 3/4 of ``keep``."""
        await self.flush()
        target = self.keep * 3 // 4
        rows = self.rows
        self._may_exist = True
        while len(rows) > target:
            rows.popitem(last=False)
