"""The queries the messages API serves from the ``messages`` read model: one message, and a
page of them filtered, sorted and paginated as Cinder's ``message_get_all`` does
(``_generate_paginate_query``: exact filters, ``key~`` LIKE filters, sort keys with
``created_at`` and ``id`` added, a marker row, limit and offset).

Deleted and expired messages are never shown (Cinder deletes expired ones periodically;
here they are gone the moment they expire).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

_COLUMNS = """
    m.id::text AS id, m.project_id, m.request_id, m.resource_type,
    m.resource_uuid::text AS resource_uuid, m.event_id, m.action_id, m.detail_id,
    m.message_level, m.created_at, m.expires_at
"""
_VISIBLE = "NOT m.deleted AND m.expires_at > now()"

# The columns a filter may name (Cinder: any column of its Message model), compared as text.
FILTER_COLUMNS = {
    "id": "m.id::text",
    "project_id": "m.project_id",
    "request_id": "m.request_id",
    "resource_type": "m.resource_type",
    "resource_uuid": "m.resource_uuid::text",
    "event_id": "m.event_id",
    "detail_id": "m.detail_id",
    "action_id": "m.action_id",
    "message_level": "m.message_level",
}
# The sort keys (Cinder: any column of its model), nulls as paginate_query's defaults.
SORT_COLUMNS = {
    "id": "m.id",
    "created_at": "m.created_at",
    "expires_at": "m.expires_at",
    "resource_uuid": "m.resource_uuid",
    **{
        key: f"coalesce({column}, '')"
        for key, column in FILTER_COLUMNS.items()
        if key not in ("id", "resource_uuid")
    },
}
DEFAULT_SORT_KEYS = ("created_at", "id")


@dataclass(frozen=True)
class MessageQuery:
    project_id: str | None  # None: every project's (an admin)
    filters: Mapping[str, str] = field(default_factory=dict)  # exact, FILTER_COLUMNS keys
    like: Mapping[str, str] = field(default_factory=dict)  # ``key~``: LIKE %value%
    sort: Sequence[tuple[str, str]] = (("created_at", "desc"), ("id", "desc"))
    limit: int | None = None
    offset: int = 0
    marker: str | None = None


def _row(record: asyncpg.Record) -> dict[str, Any]:
    return dict(record)


def _scope(project_id: str | None, args: list[Any]) -> list[str]:
    where = [_VISIBLE]
    if project_id is not None:
        args.append(project_id)
        where.append(f"m.project_id = ${len(args)}")
    return where


async def get_message(
    conn: asyncpg.Connection, message_id: str, *, project_id: str | None
) -> dict[str, Any] | None:
    """One live message; ``project_id`` None means any project's (an admin)."""
    try:
        mid = UUID(message_id)
    except ValueError:
        return None
    args: list[Any] = [mid]
    where = _scope(project_id, args)
    found = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM messages m WHERE m.id = $1 AND {' AND '.join(where)}", *args
    )
    return _row(found) if found is not None else None


async def list_messages(conn: asyncpg.Connection, q: MessageQuery) -> list[dict[str, Any]]:
    """A page of live messages in the requested order, after the marker when given
    (LookupError: no such message the caller may see)."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = _scope(q.project_id, args)
    for key, value in q.filters.items():
        where.append(f"{FILTER_COLUMNS[key]} = {arg(value)}")
    for key, value in q.like.items():
        where.append(f"{FILTER_COLUMNS[key]} LIKE {arg(f'%{value}%')}")
    if q.marker is not None:
        marker = await _marker(conn, q.marker, q.project_id, q.sort)
        if marker is None:
            raise LookupError(q.marker)
        where.append(_after(q.sort, marker, arg))
    order = ", ".join(f"{SORT_COLUMNS[k]} {d.upper()}" for k, d in q.sort)
    sql = f"SELECT {_COLUMNS} FROM messages m WHERE {' AND '.join(where)} ORDER BY {order}"
    if q.limit is not None:
        sql += f" LIMIT {arg(q.limit)}"
    if q.offset:
        sql += f" OFFSET {arg(q.offset)}"
    return [_row(r) for r in await conn.fetch(sql, *args)]


async def _marker(
    conn: asyncpg.Connection,
    marker: str,
    project_id: str | None,
    sort: Sequence[tuple[str, str]],
) -> asyncpg.Record | None:
    """The marker message's sort values (as the sort orders them), if the caller may see it."""
    try:
        mid = UUID(marker)
    except ValueError:
        return None
    args: list[Any] = [mid]
    where = _scope(project_id, args)
    values = ", ".join(f"{SORT_COLUMNS[k]} AS k{i}" for i, (k, _) in enumerate(sort))
    found: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {values} FROM messages m WHERE m.id = $1 AND {' AND '.join(where)}", *args
    )
    return found


def _after(
    sort: Sequence[tuple[str, str]], marker: asyncpg.Record, arg: Callable[[Any], str]
) -> str:
    """Rows strictly after the marker in the sort order (paginate_query's criteria)."""
    clauses = []
    for i, (key, direction) in enumerate(sort):
        equal = [f"{SORT_COLUMNS[k]} = {arg(marker[j])}" for j, (k, _) in enumerate(sort[:i])]
        op = "<" if direction == "desc" else ">"
        clauses.append(
            "(" + " AND ".join([*equal, f"{SORT_COLUMNS[key]} {op} {arg(marker[i])}"]) + ")"
        )
    return "(" + " OR ".join(clauses) + ")"
