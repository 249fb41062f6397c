"""Small pieces the projection steps are made of (see ``steps``)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from cinderblock.readmodels.event import ProjectionEvent
from cinderblock.readmodels.folds import Row, as_text, const


def ts(e: ProjectionEvent) -> Any:
    return e.timestamp


def version(e: ProjectionEvent) -> int:
    return e.version


def attachment_id(e: ProjectionEvent) -> list[UUID]:
    return [UUID(e.data["attachment_id"])]


def removed_ids(e: ProjectionEvent) -> list[UUID]:
    ids = e.data.get("removed_attachments")
    if ids is None:
        ids = [e.data["attachment_id"]] if e.data.get("attachment_id") else []
    return [UUID(i) for i in ids]


def keep_previous(row: Row, _e: ProjectionEvent) -> None:
    row["previous_status"] = row["status"]


def status(status: str) -> Any:
    return const(status=status)


def returned_status(row: Row, e: ProjectionEvent) -> None:
    """A retype's outcome: the status it recorded (v2 events); v1 events recorded none, the
    volume returns to the status it had before."""
    recorded = e.data.get("status")
    row["status"] = recorded if recorded is not None else row["previous_status"] or "available"


def released_status(row: Row, e: ProjectionEvent) -> None:
    """A migration's outcome: the status it recorded (v2 events); v1 events recorded none, a
    held status (maintenance, retyping) is handed back to the one before."""
    recorded = e.data.get("status")
    if recorded is not None:
        row["status"] = recorded
    elif row["status"] in ("maintenance", "retyping"):
        row["status"] = row["previous_status"] or "available"


def drop_attached_mode_if(removed: Any) -> Any:
    def change(row: Row, e: ProjectionEvent) -> None:
        if removed(e):
            meta = row["admin_metadata"]
            if isinstance(meta, dict):
                row["admin_metadata"] = {k: v for k, v in meta.items() if k != "attached_mode"}

    return change


def merge(column: str, part: Any) -> Any:
    """jsonb ``column || part(e)``: keys of the right side win."""

    def change(row: Row, e: ProjectionEvent) -> None:
        current = row[column]
        row[column] = {**(current if isinstance(current, dict) else {}), **part(e)}

    return change


def without(column: str, field: str) -> Any:
    def change(row: Row, e: ProjectionEvent) -> None:
        current = row[column]
        if isinstance(current, dict):
            row[column] = {k: v for k, v in current.items() if k != e.data[field]}

    return change


def text_changes(*keys: str) -> Any:
    """name/description from ``changes``: set when the key is present (``->>`` text)."""

    def change(row: Row, e: ProjectionEvent) -> None:
        changes = e.data["changes"]
        for key in keys:
            if key in changes:
                row[key] = as_text(changes[key])

    return change
