"""An aggregate's read-model rows as they were at a version or a time, folded from its
events by the same steps the live projector and replay run (``readmodels.steps``), in
memory: ``cinderblock state`` shows what ``GET /volumes/{id}`` showed then, and the API
answers a command from these rows while the read model is behind (the log is the truth).

There is no mapping here from aggregate state or events to rows: the rows are the
projection's own, shaped as the read-model queries return them (``readmodels.queries``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from cinderblock.audit.log import LoggedEvent
from cinderblock.readmodels.event import ProjectionEvent
from cinderblock.readmodels.folds import Row
from cinderblock.readmodels.queries import (
    attachment_columns,
    listed_attachment,
    snapshot_columns,
    type_columns,
    volume_columns,
)
from cinderblock.readmodels.rowstore import Folder
from cinderblock.readmodels.steps import STEPS
from cinderblock.readmodels.tables import PROJECTED_TABLES, TableSpec, load_specs
from cinderblock.store.mapping import event_data

# The read-model DDL is the same in every database a process talks to; its catalog
# description (columns, defaults) is read once per server and database.
_SPECS: dict[tuple[Any, ...], Mapping[str, TableSpec]] = {}


async def table_specs(conn: asyncpg.Connection) -> Mapping[str, TableSpec]:
    """The projected tables' columns and defaults (``tables.load_specs``), cached."""
    params = getattr(conn, "_params", None)
    key = (repr(getattr(conn, "_addr", None)), getattr(params, "database", None))
    found = _SPECS.get(key)
    if found is None:
        found = _SPECS[key] = await load_specs(conn, "public", PROJECTED_TABLES)
    return found


def _projection(logged: LoggedEvent) -> ProjectionEvent:
    return ProjectionEvent(
        name=logged.name,
        aggregate_id=logged.aggregate_id,
        version=logged.version,
        timestamp=logged.timestamp,
        data=event_data(logged.event),
        request_id=logged.meta.get("request_id"),
        request_project_id=logged.meta.get("project_id"),
    )


class Rows:
    """The rows some events leave, keyed by table and id, read as the queries read them."""

    def __init__(self, rows: Mapping[tuple[str, UUID], Row | None]) -> None:
        self.rows = rows

    def _row(self, table: str, row_id: str | UUID) -> Row | None:
        return self.rows.get((table, row_id if isinstance(row_id, UUID) else UUID(row_id)))

    def _live(self, table: str) -> list[Row]:
        return [r for (t, _), r in self.rows.items() if t == table and r and not r["deleted"]]

    def volume(self, volume_id: str | UUID, *, deleted: bool = False) -> dict[str, Any] | None:
        """``queries.get_volume``'s answer (a deleted volume only with ``deleted``)."""
        row = self._row("volumes", volume_id)
        if row is None or (row["deleted"] and not deleted):
            return None
        volume = volume_columns(row)
        volume["attachments"] = [listed_attachment(r) for r in self._attached(row["id"])]
        return volume

    def _attached(self, vid: UUID) -> list[Row]:
        """The volume's live attachment rows in the read model's order (attach time, unset
        last, then id)."""
        return sorted(
            (r for r in self._live("attachments") if r["volume_id"] == vid),
            key=lambda r: (r["attach_time"] is None, r["attach_time"] or 0, r["id"]),
        )

    def attachments(self, volume_id: str | UUID) -> list[dict[str, Any]]:
        """The volume's live attachments as ``queries.get_attachment`` returns each."""
        vid = volume_id if isinstance(volume_id, UUID) else UUID(volume_id)
        volume = self._row("volumes", vid)
        project = volume["project_id"] if volume else None
        return [attachment_columns(r, project_id=project) for r in self._attached(vid)]

    def snapshot(self, snapshot_id: str | UUID) -> dict[str, Any] | None:
        row = self._row("snapshots", snapshot_id)
        return snapshot_columns(row) if row is not None and not row["deleted"] else None

    def volume_type(self, type_id: str | UUID) -> dict[str, Any] | None:
        row = self._row("volume_types", type_id)
        return type_columns(row) if row is not None and not row["deleted"] else None

    def quota_limits(self, quota_id: str | UUID) -> dict[str, int]:
        row = self._row("quotas", quota_id)
        return dict(row["limits"]) if row is not None else {}


async def rows(
    conn: asyncpg.Connection,
    events: Sequence[LoggedEvent],
    *,
    version: int | None = None,
    at: datetime | None = None,
    position: int | None = None,
) -> Rows:
    """The rows ``events`` leave: those up to ``version`` (of their aggregate), recorded at
    or before ``at``, or at or before log ``position``, when given."""
    chosen = [
        e
        for e in sorted(events, key=lambda e: (e.position, e.version))
        if (version is None or e.version <= version)
        and (at is None or e.timestamp <= at)
        and (position is None or e.position <= position)
    ]
    folder = Folder(conn, await table_specs(conn), STEPS, fresh=True)
    await folder.fold([_projection(e) for e in chosen if e.name in STEPS])
    return Rows(folder.rows)
