"""Rows of the projected tables in memory (``tables.TableSpec``): read from PostgreSQL,
folded by the projection steps (``steps.STEPS``), written back set-based. The live
projector, replay and ``cinderblock.audit.state`` all fold with ``Folder``.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any
from uuid import UUID

import asyncpg

from cinderblock.readmodels.event import ProjectionEvent
from cinderblock.readmodels.folds import Row, Step, parts_of
from cinderblock.readmodels.quarantine import SetAside, clear, record, retry_will_fix
from cinderblock.readmodels.tables import OWNER_COLUMN, TableSpec, q

# An aggregate's events up to the rows folded so far, in log order; those that cannot be
# decoded as set-asides (replay's repair of a quarantined aggregate reads them again).
History = Callable[[UUID], Awaitable[list[ProjectionEvent | SetAside]]]

_ABSENT = object()

Key = tuple[str, UUID]


Plan = tuple[tuple[str, int, Any, tuple[Any, ...]], ...]
_PLANS: dict[tuple[int, frozenset[str]], tuple[Any, tuple[int, ...], dict[str, Plan]]] = {}
_SQL: dict[tuple[Any, ...], str] = {}


def _plans(projections: Mapping[str, tuple[Step, ...]], tables: frozenset[str]) -> dict[str, Plan]:
    """Per event name, its steps on ``tables`` (``--projection`` picks a subset), compiled
    to (table, kind, ids or None for the aggregate's own row, the changes to run in order);
    compiled once per registry (as its entries are: a test may replace one) and table set."""
    key = (id(projections), tables)
    entries = tuple(map(id, projections.values()))
    cached = _PLANS.get(key)
    if cached is not None and cached[0] is projections and cached[1] == entries:
        return cached[2]
    found: dict[str, Plan] = {}
    for name, steps in projections.items():
        plan = tuple(
            (s.table, s.kind_code, None if s.own else s.ids, parts_of(s.change))
            for s in steps
            if s.table in tables
        )
        if plan:
            found[name] = plan
    _PLANS[key] = (projections, entries, found)
    return found


def _sql(spec: TableSpec, schema: str, kind: str) -> str:
    """A table's upsert or select statement, built once per column layout and schema."""
    key = (spec.name, spec.columns, spec.types, spec.jsonb, schema, kind)
    found = _SQL.get(key)
    if found is None:
        if len(_SQL) > 1_000:  # side schemas of many rebuilds in one process
            _SQL.clear()
        found = spec.upsert_sql(schema) if kind == "upsert" else spec.select_sql(schema)
        _SQL[key] = found
    return found


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
        quarantine: str | None = None,
        history: History | None = None,
        held: Mapping[UUID, int] | None = None,
        rows: OrderedDict[Key, Row | None] | None = None,
        optimistic: bool = False,
    ) -> None:
        """``quarantine`` (the projection's name) with ``history``: an event whose steps
        raise, or whose rows PostgreSQL refuses, quarantines its aggregate instead of
        failing the fold. The aggregate's rows are rebuilt from ``history`` event by event
        up to the one that fails, which is recorded in the schema's ``quarantine`` table
        with every later event of the aggregate (held, like those of the aggregates in
        ``held``: aggregate → first version not applied). Without it such errors raise.

        ``optimistic``: rows are written without a savepoint each, so a row PostgreSQL
        refuses fails the whole transaction (the caller then folds again, not optimistic:
        the live projector's batches are small and almost never fail)."""
        self.conn = conn
        self.schema = schema
        self.specs = specs
        self.keep = keep
        # Only the steps on tables this folder owns (``--projection`` picks a subset).
        # Per event name, its steps on the tables this folder owns (``--projection`` picks
        # a subset), compiled to (table, kind, ids or None for the aggregate's own row,
        # the changes to run in order).
        self.plans = _plans(projections, frozenset(specs))
        # ``rows``: a cache the caller keeps between folders (the live projector's: rows it
        # wrote itself, valid while nobody else writes the tables).
        self.rows: OrderedDict[Key, Row | None] = rows if rows is not None else OrderedDict()
        # False while the tables are known to hold no row this folder did not create
        # (a fresh side table before the first eviction): misses need no lookup.
        self._may_exist = not fresh
        self.dirty: set[Key] = set()
        self._upserts = {t: _sql(spec, schema, "upsert") for t, spec in specs.items()}
        self._selects = {t: _sql(spec, schema, "select") for t, spec in specs.items()}
        self.consumer = quarantine
        self.optimistic = optimistic
        self.history = history
        self.since: dict[UUID, int] = dict(held or {})
        self.aside: list[SetAside] = []  # set aside, not written yet
        self.recorded: list[SetAside] = []  # set aside and written (not recorded before)
        self._suspects: dict[UUID, BaseException] = {}  # rows to rebuild at the next flush
        self._repairing = False

    def _new_row(self, table: str) -> Row:
        return self.specs[table].new_row()

    async def _load_missing(self, events: Sequence[ProjectionEvent]) -> None:
        """Read the rows ``events`` touch that are not in memory (``None``: no such row)."""
        rows, plans = self.rows, self.plans
        wanted: dict[str, set[UUID]] = {}
        for e in events:
            try:
                for table, _kind, ids, _changes in plans.get(e.name, ()):
                    for rid in (e.aggregate_id,) if ids is None else ids(e):
                        if (table, rid) not in rows:
                            wanted.setdefault(table, set()).add(rid)
            except Exception:  # the fold meets the same error and sets the event aside
                if self.consumer is None:
                    raise
        for table, missing in wanted.items():
            decode = self.specs[table].decode
            found = {
                r["id"]: decode(r)
                for r in await self.conn.fetch(self._selects[table], list(missing))
            }
            for rid in missing:
                rows[(table, rid)] = found.get(rid)

    def _keys_of(self, e: ProjectionEvent) -> list[Key]:
        return [
            (table, rid)
            for table, _kind, ids, _changes in self.plans.get(e.name, ())
            for rid in ((e.aggregate_id,) if ids is None else ids(e))
        ]

    async def fold(self, events: Sequence[ProjectionEvent]) -> int:
        """Apply ``events`` in order (the step semantics of ``folds``); returns how many
        had a projection."""
        if self._may_exist:
            await self._load_missing(events)
        rows, plans, mark, new_row = self.rows, self.plans, self.dirty.add, self._new_row
        since = self.since
        applied = 0
        for e in events:
            plan = plans.get(e.name)
            if plan is None:
                continue
            if since:
                first = since.get(e.aggregate_id)
                if first is not None and e.version >= first:
                    self._hold(e, first)
                    continue
            try:
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
            except Exception as err:
                if self.consumer is None:
                    raise
                # Its rows may be half changed: rebuilt from its history at the next flush.
                self._suspects.setdefault(e.aggregate_id, err)
                since[e.aggregate_id] = e.version
                continue
            applied += 1
        if self.keep and len(rows) > self.keep and not self._repairing:
            await self._trim()
        return applied

    def set_aside(self, undecodable: Iterable[SetAside]) -> None:
        """Events that could not be decoded: each quarantines its aggregate from its version
        on (or is held, when the aggregate already is). Call before folding their page."""
        for entry in undecodable:
            first = self.since.get(entry.aggregate_id)
            if first is not None and entry.version >= first:
                if entry.version == first:
                    continue
                self.aside.append(
                    SetAside.behind(
                        entry.consumer, entry.aggregate_id, entry.version, entry.event_name, first
                    )
                )
                continue
            self.since[entry.aggregate_id] = entry.version
            self.aside.append(entry)

    def _hold(self, e: ProjectionEvent, first: int) -> None:
        if self.consumer is not None and e.version > first:  # not the failed one itself
            self.aside.append(
                SetAside.behind(self.consumer, e.aggregate_id, e.version, e.name, first)
            )

    def _owner(self, table: str, row: Row) -> Any:
        return row[OWNER_COLUMN.get(table, "id")]

    async def flush(self) -> int:
        """Write every changed row; returns how many. With a quarantine, the rows of an
        aggregate PostgreSQL refuses (found by halving the statement) or whose events
        raised are rebuilt event by event, and what was set aside is recorded."""
        suspects = self._suspects
        by_table: dict[str, list[Row]] = {}
        for key in self.dirty:
            row = self.rows[key]
            if row is not None and (not suspects or self._owner(key[0], row) not in suspects):
                by_table.setdefault(key[0], []).append(row)
        for table, rows in by_table.items():
            await self._write(table, rows)
        written = len(self.dirty)
        self.dirty.clear()
        while suspects:
            aggregate_id, err = suspects.popitem()
            await self._repair(aggregate_id, err)
        if self.aside:
            quarantine = f"{q(self.schema)}.quarantine"
            self.recorded += await record(self.conn, self.aside, table=quarantine)
            self.aside = []
        return written

    async def _write(self, table: str, rows: Sequence[Row]) -> None:
        statement, columns = self._upserts[table], self.specs[table].columns_of(rows)
        if self.consumer is None or self.optimistic:
            await self.conn.execute(statement, *columns)
            return
        try:
            async with self.conn.transaction():
                await self.conn.execute(statement, *columns)
        except Exception as err:
            if retry_will_fix(err):
                raise
            if len(rows) == 1:
                self._suspects.setdefault(self._owner(table, rows[0]), err)
                return
            half = len(rows) // 2
            await self._write(table, rows[:half])
            await self._write(table, rows[half:])

    async def _repair(self, aggregate_id: UUID, err: BaseException) -> None:
        """Rebuild the aggregate's rows from its history, one event and one savepoint at a
        time, up to the first event that fails: that one is quarantined, the later ones
        are held; the rows stay as the event before left them (as the live projector's)."""
        if self.history is None or self.consumer is None:
            raise err
        await self._forget(aggregate_id)
        history = await self.history(aggregate_id)
        failed: SetAside | None = None
        self._repairing = True
        try:
            for item in history:
                if failed is not None:
                    if isinstance(item, SetAside) or item.name in self.plans:
                        name = item.event_name if isinstance(item, SetAside) else item.name
                        self.aside.append(
                            SetAside.behind(
                                self.consumer, aggregate_id, item.version, name, failed.version
                            )
                        )
                    continue
                if isinstance(item, SetAside):  # could not be decoded
                    failed = item
                    continue
                error = await self._apply_alone(item)
                if error is not None:
                    failed = SetAside.failed(
                        self.consumer, aggregate_id, item.version, item.name, error
                    )
        finally:
            self._repairing = False
        if failed is not None:
            self.aside.append(failed)
            self.since[aggregate_id] = failed.version

    async def _apply_alone(self, e: ProjectionEvent) -> BaseException | None:
        """Fold one event and write its rows in a savepoint; on failure put its rows back as
        they were (in memory and in the table) and return the error."""
        if e.name not in self.plans:
            return None
        try:
            if self._may_exist:
                await self._load_missing([e])
            keys = self._keys_of(e)
        except Exception as err:
            if retry_will_fix(err):
                raise
            return err
        before = {key: copy.deepcopy(self.rows.get(key, _ABSENT)) for key in keys}
        await self.fold([e])
        error = self._suspects.pop(e.aggregate_id, None)
        if error is None:
            try:
                async with self.conn.transaction():
                    for table, rows in self._dirty_rows().items():
                        await self.conn.execute(
                            self._upserts[table], *self.specs[table].columns_of(rows)
                        )
            except Exception as err:
                if retry_will_fix(err):
                    raise
                error = err
        self.since.pop(e.aggregate_id, None)
        self.dirty.clear()
        if error is not None:
            for key, row in before.items():
                if row is _ABSENT:
                    self.rows.pop(key, None)
                else:
                    self.rows[key] = row  # type: ignore[assignment]
        return error

    def _dirty_rows(self) -> dict[str, list[Row]]:
        by_table: dict[str, list[Row]] = {}
        for key in self.dirty:
            row = self.rows[key]
            if row is not None:
                by_table.setdefault(key[0], []).append(row)
        return by_table

    async def _forget(self, aggregate_id: UUID) -> None:
        """Drop the aggregate's rows (memory and tables) and what was set aside of it."""
        mine = [
            key
            for key, row in self.rows.items()
            if row is not None and self._owner(key[0], row) == aggregate_id
        ]
        for key in mine:
            del self.rows[key]
            self.dirty.discard(key)
        for table in self.specs:
            column = OWNER_COLUMN.get(table, "id")
            await self.conn.execute(
                f"DELETE FROM {q(self.schema)}.{q(table)} WHERE {q(column)} = $1", aggregate_id
            )
        self.aside = [e for e in self.aside if e.aggregate_id != aggregate_id]
        assert self.consumer is not None
        await clear(self.conn, self.consumer, [aggregate_id], table=f"{q(self.schema)}.quarantine")
        self.since.pop(aggregate_id, None)

    async def _trim(self) -> None:
        """Write everything changed, then forget the oldest rows down to 3/4 of ``keep``."""
        await self.flush()
        target = self.keep * 3 // 4
        rows = self.rows
        self._may_exist = True
        while len(rows) > target:
            rows.popitem(last=False)
