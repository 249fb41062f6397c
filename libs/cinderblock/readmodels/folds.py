"""Each event's effect on read-model rows, as plain Python steps that ``rowstore.Folder``
runs on rows in memory: the live projector a batch at a time, replay thousands of events
per page, ``cinderblock.audit.state`` one aggregate's events.

An event maps to steps. A step names a table, the row ids it touches and what it does:

- ``insert``: a new row from the event, unless the row exists (a repeated create is a no-op);
- ``update``: change the aggregate's own row only if its ``version`` is older than the
  event (idempotent), then stamp ``updated_at`` and ``version``;
- ``touch``: change rows that are not deleted, whatever their version (attachment rows,
  which carry the version of the event that created them).

Rows are dicts of column → value. jsonb columns hold Python values; ``JSON_NULL`` is a
JSON ``null`` (SQL NULL is ``None``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from cinderblock.readmodels.event import ProjectionEvent

Row = dict[str, Any]


class _JsonNull:
    """A JSON ``null`` stored in a jsonb column (not SQL NULL)."""

    _instance: _JsonNull | None = None

    def __new__(cls) -> _JsonNull:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "JSON_NULL"

    def __reduce__(self) -> str:
        return "JSON_NULL"


JSON_NULL = _JsonNull()


def jsonb(value: Any) -> Any:
    """An event value as a jsonb column value (``None`` becomes a JSON ``null``)."""
    return JSON_NULL if value is None else value


def as_text(value: Any) -> str | None:
    """PostgreSQL's ``->>`` of a JSON value."""
    if value is None or value is JSON_NULL:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"t", "true", "y", "yes", "on", "1"}


def jsonb_add(a: Any, b: Any) -> dict[str, int]:
    """Key-wise sum of two ``{"resource": n}`` objects (the SQL ``cb_jsonb_add``)."""
    a = a if isinstance(a, dict) else {}
    b = b if isinstance(b, dict) else {}
    return {k: int(a.get(k) or 0) + int(b.get(k) or 0) for k in {**a, **b}}


Ids = Callable[[ProjectionEvent], list[UUID]]
Change = Callable[[Row, ProjectionEvent], None]


@dataclass(frozen=True)
class Step:
    table: str
    kind: str  # "insert" | "update" | "touch"
    ids: Ids
    change: Change  # insert: fills the new row; update/touch: mutates the row

    @property
    def own(self) -> bool:
        """The step touches only the event's aggregate's row."""
        return self.ids is _own

    @property
    def kind_code(self) -> int:
        return _KINDS[self.kind]


_KINDS = {"insert": 0, "update": 1, "touch": 2}


def _own(e: ProjectionEvent) -> list[UUID]:
    return [e.aggregate_id]


def insert(table: str, fill: Change, ids: Ids = _own) -> Step:
    return Step(table, "insert", ids, fill)


def update(table: str, change: Change) -> Step:
    return Step(table, "update", _own, change)


def touch(table: str, ids: Ids, change: Change) -> Step:
    return Step(table, "touch", ids, change)


def fields(**values: Callable[[ProjectionEvent], Any] | str) -> Change:
    """A change that sets columns: a string names an event field, a callable computes."""

    copied = tuple((c, s) for c, s in values.items() if isinstance(s, str))
    computed = tuple((c, s) for c, s in values.items() if not isinstance(s, str))

    def change(row: Row, e: ProjectionEvent) -> None:
        data = e.data
        for column, field in copied:
            row[column] = data[field]
        for column, compute in computed:
            row[column] = compute(e)

    return change


def const(**values: Any) -> Change:
    def change(row: Row, _e: ProjectionEvent) -> None:
        row.update(values)

    return change


def chain(*changes: Change) -> Change:
    def change(row: Row, e: ProjectionEvent) -> None:
        for c in changes:
            c(row, e)

    change.parts = changes  # type: ignore[attr-defined]  # flattened by rowstore.Folder
    return change


def parts_of(change: Change) -> tuple[Change, ...]:
    """A change as the flat sequence of changes it runs."""
    parts = getattr(change, "parts", None)
    if parts is None:
        return (change,)
    return tuple(p for c in parts for p in parts_of(c))
