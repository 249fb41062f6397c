"""The projected tables as the catalog describes them (``TableSpec``: columns, types, jsonb
columns, defaults evaluated once), so rows can be held in memory as dicts and written back
set-based (one ``INSERT … SELECT FROM unnest … ON CONFLICT (id) DO UPDATE`` per table).

The column set of each table comes from the catalog (a column added to the DDL needs no
change here); a new row starts from the columns' defaults.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import asyncpg

from cinderblock.readmodels.folds import JSON_NULL, Row
from cinderblock.readmodels.schema import PROJECTED_TABLES

# Every projected row is changed by the events of one aggregate only: the row's own id, or
# (attachments) its volume's, or (messages) the resource's the message is about.
OWNER_COLUMN = {"attachments": "volume_id", "messages": "resource_uuid"}


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
