"""Queries the API serves from the read models (never from the event store)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from cinderblock.readmodels.folds import JSON_NULL

_VOLUME_COLUMNS = """
    v.id::text AS id, v.project_id, v.user_id, v.name, v.description, v.size, v.status,
    v.attach_status, v.migration_status, v.host, v.availability_zone, v.volume_type_id,
    v.volume_type_name, v.bootable, v.multiattach, v.encryption_key_id, v.metadata::text,
    v.admin_metadata::text, v.image_metadata::text, v.snapshot_id, v.source_volid,
    v.consistencygroup_id, v.group_id, v.provider_id, v.replication_status, v.use_quota,
    v.cluster_name, v.created_at, v.updated_at, v.version
"""

_JSON_COLUMNS = ("metadata", "admin_metadata", "image_metadata")

# Sort keys Cinder accepts for volumes, mapped to columns.
SORT_KEYS = {
    "created_at": "v.created_at",
    "updated_at": "coalesce(v.updated_at, 'epoch'::timestamptz)",
    "id": "v.id",
    "name": "coalesce(v.name, '')",
    "display_name": "coalesce(v.name, '')",  # cinderclient sends name as display_name
    "status": "v.status",
    "size": "v.size",
    "availability_zone": "v.availability_zone",
    "bootable": "v.bootable",
}

# Filters a caller may use, mapped to columns (values compared as text).
FILTER_COLUMNS = {
    "name": "v.name",
    "status": "v.status",
    "bootable": "v.bootable::text",
    "availability_zone": "v.availability_zone",
    "size": "v.size::text",
    "migration_status": "v.migration_status",
    "group_id": "v.group_id",
    "user_id": "v.user_id",
}


def _row_to_volume(row: asyncpg.Record) -> dict[str, Any]:
    volume = dict(row)
    for column in _JSON_COLUMNS:
        volume[column] = json.loads(volume[column])
    volume["attachments"] = []
    return volume


# The same rows shaped in memory (``cinderblock.audit.state`` folds them from the log with
# the projection's steps): each answers exactly as the SELECT of its table above would.
_VOLUME_FIELDS = tuple(
    part.split(" AS ")[-1].split(".")[-1].replace("::text", "").strip()
    for part in _VOLUME_COLUMNS.split(",")
)


def _json(value: Any) -> Any:
    return None if value is JSON_NULL else value


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def volume_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """A volumes row held in memory as ``get_volume`` returns it (without attachments)."""
    volume = {f: row[f] for f in _VOLUME_FIELDS}
    volume["id"] = _text(volume["id"])
    for column in _JSON_COLUMNS:
        volume[column] = _json(volume[column])
    volume["attachments"] = []
    return volume


def listed_attachment(row: Mapping[str, Any]) -> dict[str, Any]:
    """An attachments row held in memory as a volume's ``attachments`` list item."""
    return {
        "attachment_id": _text(row["id"]),
        "volume_id": _text(row["volume_id"]),
        **{k: row[k] for k in _LISTED_ATTACHMENT},
    }


_LISTED_ATTACHMENT = (
    "instance_uuid",
    "attached_host",
    "mountpoint",
    "attach_status",
    "attach_mode",
    "attach_time",
)


async def _attachments(
    conn: asyncpg.Connection, ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    if not ids:
        return {}
    rows = await conn.fetch(
        """
        SELECT id::text AS attachment_id, volume_id::text AS volume_id, instance_uuid,
               attached_host, mountpoint, attach_status, attach_mode, attach_time
        FROM attachments WHERE volume_id = ANY($1::uuid[]) AND NOT deleted
        ORDER BY attach_time NULLS LAST, id
        """,
        list(ids),
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        found.setdefault(r["volume_id"], []).append(dict(r))
    return found


async def get_volume(
    conn: asyncpg.Connection, volume_id: str, *, project_id: str | None
) -> dict[str, Any] | None:
    """One live volume; ``project_id`` None means any project (admin)."""
    try:
        vid = UUID(volume_id)
    except ValueError:
        return None
    row = await conn.fetchrow(
        f"SELECT {_VOLUME_COLUMNS} FROM volumes v WHERE v.id = $1 AND NOT v.deleted "
        "AND ($2::text IS NULL OR v.project_id = $2)",
        vid,
        project_id,
    )
    if row is None:
        return None
    volume = _row_to_volume(row)
    volume["attachments"] = (await _attachments(conn, [volume["id"]])).get(volume["id"], [])
    return volume


@dataclass(frozen=True)
class ListQuery:
    project_id: str | None  # None: every project (admin with all_tenants)
    filters: Mapping[str, str]
    sort: Sequence[tuple[str, str]]  # (key, "asc"|"desc")
    limit: int
    marker: str | None = None


def _where(q: ListQuery) -> tuple[list[str], list[Any]]:
    """The filter conditions of a list query (no marker), with their arguments."""
    where = ["NOT v.deleted"]
    args: list[Any] = []
    if q.project_id is not None:
        args.append(q.project_id)
        where.append(f"v.project_id = ${len(args)}")
    for key, value in q.filters.items():
        args.append(value)
        where.append(f"{FILTER_COLUMNS[key]} = ${len(args)}")
    return where, args


async def list_volumes(conn: asyncpg.Connection, q: ListQuery) -> list[dict[str, Any]]:
    """A page of live volumes in the requested order (keyset pagination after ``marker``)."""
    where, args = _where(q)

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    sort = list(q.sort)
    if all(key != "id" for key, _ in sort):
        sort.append(("id", "asc"))  # a total order, so markers never skip or repeat rows
    order = ", ".join(f"{SORT_KEYS[k]} {d.upper()}" for k, d in sort)
    if q.marker is not None:
        marker = await _marker_row(conn, q.marker)
        if marker is None:
            raise LookupError(q.marker)
        where.append(_after_marker(sort, marker, arg))
    sql = (
        f"SELECT {_VOLUME_COLUMNS} FROM volumes v WHERE {' AND '.join(where)} "
        f"ORDER BY {order} LIMIT {arg(q.limit)}"
    )
    volumes = [_row_to_volume(r) for r in await conn.fetch(sql, *args)]
    attached = await _attachments(conn, [v["id"] for v in volumes])
    for v in volumes:
        v["attachments"] = attached.get(v["id"], [])
    return volumes


async def count_volumes(conn: asyncpg.Connection, q: ListQuery) -> int:
    """How many live volumes match the query's filters (``with_count``), ignoring paging."""
    where, args = _where(q)
    count: int = await conn.fetchval(
        f"SELECT count(*) FROM volumes v WHERE {' AND '.join(where)}", *args
    )
    return count


async def _marker_row(conn: asyncpg.Connection, marker: str) -> asyncpg.Record | None:
    try:
        mid = UUID(marker)
    except ValueError:
        return None
    return await conn.fetchrow(f"SELECT {_VOLUME_COLUMNS} FROM volumes v WHERE v.id = $1", mid)


def _after_marker(sort: Sequence[tuple[str, str]], marker: asyncpg.Record, arg: Any) -> str:
    """Rows strictly after the marker row in the sort order (lexicographic keyset)."""
    clauses = []
    for i, (key, direction) in enumerate(sort):
        equal = [f"{SORT_KEYS[k]} = {arg(_value(marker, k))}" for k, _ in sort[:i]]
        op = "<" if direction == "desc" else ">"
        beyond = f"{SORT_KEYS[key]} {op} {arg(_value(marker, key))}"
        clauses.append("(" + " AND ".join([*equal, beyond]) + ")")
    return "(" + " OR ".join(clauses) + ")"


def _value(row: asyncpg.Record, key: str) -> Any:
    """The marker's value of a sort key, null-free exactly as SORT_KEYS sorts it."""
    value = row["name"] if key == "display_name" else row[key]
    if key == "id":
        return UUID(value)
    if key in ("name", "display_name"):
        return row["name"] or ""
    if key == "updated_at" and value is None:
        return datetime(1970, 1, 1, tzinfo=UTC)
    return value


async def projected_position(conn: asyncpg.Connection, name: str) -> tuple[int, int]:
    row = await conn.fetchrow("SELECT tx_id, position FROM tracking WHERE name = $1", name)
    return (row["tx_id"], row["position"]) if row is not None else (0, 0)


_SNAPSHOT_COLUMNS = """
    s.id::text AS id, s.volume_id::text AS volume_id, s.project_id, s.user_id, s.name,
    s.description, s.size, s.status, s.progress, s.metadata::text AS metadata, s.created_at,
    s.updated_at
"""

SNAPSHOT_FILTERS = {"name": "s.name", "status": "s.status", "volume_id": "s.volume_id::text"}


def _row_to_snapshot(row: asyncpg.Record) -> dict[str, Any]:
    snapshot = dict(row)
    snapshot["metadata"] = json.loads(snapshot["metadata"])
    return snapshot


def snapshot_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """A snapshots row held in memory as ``get_snapshot`` returns it."""
    fields = ("project_id", "user_id", "name", "description", "size", "status", "progress")
    return {
        "id": _text(row["id"]),
        "volume_id": _text(row["volume_id"]),
        **{f: row[f] for f in fields},
        "metadata": _json(row["metadata"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


async def get_snapshot(
    conn: asyncpg.Connection, snapshot_id: str, *, project_id: str | None
) -> dict[str, Any] | None:
    try:
        sid = UUID(snapshot_id)
    except ValueError:
        return None
    row = await conn.fetchrow(
        f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots s WHERE s.id = $1 AND NOT s.deleted "
        "AND ($2::text IS NULL OR s.project_id = $2)",
        sid,
        project_id,
    )
    return _row_to_snapshot(row) if row is not None else None


async def list_snapshots(
    conn: asyncpg.Connection,
    *,
    project_id: str | None,
    filters: Mapping[str, str],
    limit: int,
    marker: str | None,
) -> list[dict[str, Any]]:
    """Newest first (Cinder's default), keyset pagination after ``marker``."""
    where = ["NOT s.deleted"]
    args: list[Any] = []
    if project_id is not None:
        args.append(project_id)
        where.append(f"s.project_id = ${len(args)}")
    for key, value in filters.items():
        args.append(value)
        where.append(f"{SNAPSHOT_FILTERS[key]} = ${len(args)}")
    if marker is not None:
        try:
            mid = UUID(marker)
        except ValueError:
            raise LookupError(marker) from None
        found = await conn.fetchrow("SELECT created_at FROM snapshots WHERE id = $1", mid)
        if found is None:
            raise LookupError(marker)
        args += [found["created_at"], mid]
        where.append(f"(s.created_at, s.id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    rows = await conn.fetch(
        f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots s WHERE {' AND '.join(where)} "
        f"ORDER BY s.created_at DESC, s.id DESC LIMIT ${len(args)}",
        *args,
    )
    return [_row_to_snapshot(r) for r in rows]


_TYPE_COLUMNS = """
    t.id::text AS id, t.name, t.description, t.is_public, t.extra_specs::text AS extra_specs,
    t.projects::text AS projects, t.encryption::text AS encryption,
    t.encryption_created_at, t.encryption_updated_at
"""


def _row_to_type(row: asyncpg.Record) -> dict[str, Any]:
    vtype = dict(row)
    vtype["extra_specs"] = json.loads(vtype["extra_specs"])
    vtype["projects"] = json.loads(vtype["projects"])
    vtype["encryption"] = json.loads(vtype["encryption"]) if vtype["encryption"] else None
    return vtype


def type_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """A volume_types row held in memory as ``get_type`` returns it."""
    return {
        "id": _text(row["id"]),
        "name": row["name"],
        "description": row["description"],
        "is_public": row["is_public"],
        "extra_specs": _json(row["extra_specs"]),
        "projects": _json(row["projects"]),
        "encryption": _json(row["encryption"]) or None,
        "encryption_created_at": row["encryption_created_at"],
        "encryption_updated_at": row["encryption_updated_at"],
    }


async def list_types(
    conn: asyncpg.Connection, *, project_id: str | None, is_public: bool | None = None
) -> list[dict[str, Any]]:
    """Live types by name; ``project_id`` limits to public types and those shared with it."""
    rows = await conn.fetch(
        f"SELECT {_TYPE_COLUMNS} FROM volume_types t WHERE NOT t.deleted "
        "AND ($1::text IS NULL OR t.is_public OR t.projects ? $1) "
        "AND ($2::boolean IS NULL OR t.is_public = $2) ORDER BY t.name, t.id",
        project_id,
        is_public,
    )
    return [_row_to_type(r) for r in rows]


async def get_type(conn: asyncpg.Connection, type_id: str) -> dict[str, Any] | None:
    try:
        tid = UUID(type_id)
    except ValueError:
        return None
    row = await conn.fetchrow(
        f"SELECT {_TYPE_COLUMNS} FROM volume_types t WHERE t.id = $1 AND NOT t.deleted", tid
    )
    return _row_to_type(row) if row is not None else None


async def volumes_of_type(conn: asyncpg.Connection, type_id: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM volumes WHERE volume_type_id = $1 AND NOT deleted", type_id
    )
    return count


_ATTACHMENT_COLUMNS = """
    a.id::text AS id, a.volume_id::text AS volume_id, a.instance_uuid, a.attached_host,
    a.mountpoint, a.attach_status, a.attach_mode, a.connection_info::text AS connection_info,
    a.attach_time, a.detach_time, v.project_id
"""

ATTACHMENT_FILTERS = {
    "volume_id": "a.volume_id::text",
    "instance_id": "a.instance_uuid",
    "status": "a.attach_status",
    "attach_status": "a.attach_status",
}


def _row_to_attachment(row: asyncpg.Record) -> dict[str, Any]:
    attachment = dict(row)
    raw = attachment["connection_info"]
    attachment["connection_info"] = json.loads(raw) if raw else {}
    return attachment


def attachment_columns(row: Mapping[str, Any], *, project_id: str | None) -> dict[str, Any]:
    """An attachments row held in memory as ``get_attachment`` returns it (``project_id``:
    its volume's)."""
    fields = ("instance_uuid", "attached_host", "mountpoint", "attach_status", "attach_mode")
    return {
        "id": _text(row["id"]),
        "volume_id": _text(row["volume_id"]),
        **{f: row[f] for f in fields},
        "connection_info": _json(row["connection_info"]) or {},
        "attach_time": row["attach_time"],
        "detach_time": row["detach_time"],
        "project_id": project_id,
    }


async def get_attachment(
    conn: asyncpg.Connection, attachment_id: str, *, project_id: str | None
) -> dict[str, Any] | None:
    try:
        aid = UUID(attachment_id)
    except ValueError:
        return None
    row = await conn.fetchrow(
        f"SELECT {_ATTACHMENT_COLUMNS} FROM attachments a JOIN volumes v ON v.id = a.volume_id "
        "WHERE a.id = $1 AND NOT a.deleted AND ($2::text IS NULL OR v.project_id = $2)",
        aid,
        project_id,
    )
    return _row_to_attachment(row) if row is not None else None


async def list_attachments(
    conn: asyncpg.Connection, *, project_id: str | None, filters: Mapping[str, str]
) -> list[dict[str, Any]]:
    where = ["NOT a.deleted"]
    args: list[Any] = []
    if project_id is not None:
        args.append(project_id)
        where.append(f"v.project_id = ${len(args)}")
    for key, value in filters.items():
        args.append(value)
        where.append(f"{ATTACHMENT_FILTERS[key]} = ${len(args)}")
    rows = await conn.fetch(
        f"SELECT {_ATTACHMENT_COLUMNS} FROM attachments a JOIN volumes v ON v.id = a.volume_id "
        f"WHERE {' AND '.join(where)} ORDER BY a.attach_time NULLS LAST, a.id",
        *args,
    )
    return [_row_to_attachment(r) for r in rows]


async def get_quota(conn: asyncpg.Connection, project_id: str) -> dict[str, Any]:
    """A project's own limits, usage in use and outstanding reservations (empty when the
    project never used anything)."""
    row = await conn.fetchrow(
        "SELECT limits::text, in_use::text, reservations::text FROM quotas WHERE project_id = $1",
        project_id,
    )
    if row is None:
        return {"limits": {}, "in_use": {}, "reserved": {}}
    reserved: dict[str, int] = {}
    for deltas in json.loads(row["reservations"]).values():
        for key, value in deltas.items():
            reserved[key] = reserved.get(key, 0) + max(int(value), 0)
    return {
        "limits": json.loads(row["limits"]),
        "in_use": json.loads(row["in_use"]),
        "reserved": reserved,
    }
