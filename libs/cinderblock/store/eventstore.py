"""Async event store on asyncpg: one INSERT per save, optimistic concurrency on
``(originator_id, originator_version)``, settled-row reads for consumers."""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from cinderblock.store.mapping import make_mapper
from cinderblock.store.schema import EVENTS_CHANNEL, EVENTS_DDL

A = TypeVar("A", bound=Aggregate)

_INSERT = f"""
WITH ins AS (
    INSERT INTO events (originator_id, originator_version, topic, state, meta)
    SELECT i, v, t, s, m::jsonb FROM unnest($1::uuid[], $2::int[], $3::text[], $4::bytea[],
                                          $5::text[]) AS u(i, v, t, s, m)
    RETURNING position, tx_id
)
SELECT max(tx_id::text::bigint) AS tx_id, max(position) AS position,
       (SELECT pg_notify('{EVENTS_CHANNEL}', '')) AS notified
FROM ins
"""

_SELECT_AGGREGATE = """
SELECT originator_version, topic, state FROM events
WHERE originator_id = $1 AND originator_version > $2 ORDER BY originator_version
"""

_SELECT_SETTLED = """
SELECT position, tx_id::text::bigint AS tx_id, originator_id, originator_version, topic, state,
       meta::text AS meta, recorded_at
FROM events
WHERE (tx_id, position) > ($1::text::xid8, $2)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY events.tx_id, events.position
LIMIT $3
"""
# ``events.``: the bare name would order by the output column ``tx_id`` (the bigint cast),
# which no index provides: PostgreSQL then sorted every settled row after the position for
# each batch (measured: 123 ms instead of 17 ms per 5,000-row page 150,000 rows from the
# end of a 300,000-event log).


class ConcurrencyConflictError(Exception):
    """Raised when another writer appended to one of the aggregates first."""


@dataclass(frozen=True, order=True)
class Position:
    """A point in the log in consumer order: (writing transaction id, position)."""

    tx_id: int
    position: int

    def __str__(self) -> str:
        return f"{self.tx_id}:{self.position}"

    @classmethod
    def parse(cls, text: str) -> Position:
        tx, _, pos = text.partition(":")
        return cls(int(tx), int(pos))


START = Position(0, 0)


@dataclass(frozen=True)
class RecordedEvent:
    """One stored row as consumers see it."""

    position: int
    tx_id: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes
    meta: dict[str, Any]
    recorded_at: datetime

    @property
    def at(self) -> Position:
        return Position(self.tx_id, self.position)


class AsyncEventStore:
    """Loads and saves eventsourcing aggregates with asyncpg.

    Loaded aggregates are cached per process and fast-forwarded with any newer events on
    the next load, so a load is one small query. Callers get a private copy.
    """

    def __init__(self, pool: asyncpg.Pool, *, cache_size: int = 10_000) -> None:
        self.pool = pool
        self.mapper = make_mapper()
        # Pickled aggregates: unpickling is the cheapest private copy for each caller.
        self._cache: OrderedDict[UUID, bytes] = OrderedDict()
        self._cache_size = cache_size

    async def create_schema(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(hashtext('cinderblock-schema'))")
            try:
                await conn.execute(EVENTS_DDL)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext('cinderblock-schema'))")

    async def load(self, aggregate_id: UUID, cls: type[A]) -> A | None:
        """The aggregate's current state, or None if it has no events."""
        cached = self._cache.get(aggregate_id)
        aggregate: Any = pickle.loads(cached) if cached is not None else None
        after = aggregate.version if aggregate is not None else 0
        rows = await self.pool.fetch(_SELECT_AGGREGATE, aggregate_id, after)
        for row in rows:
            stored = StoredEvent(
                aggregate_id, row["originator_version"], row["topic"], row["state"]
            )
            aggregate = self.mapper.to_domain_event(stored).mutate(aggregate)  # type: ignore[attr-defined]
        if aggregate is not None and not isinstance(aggregate, cls):
            return None
        return aggregate

    async def save(self, *aggregates: Aggregate, meta: Mapping[str, Any]) -> Position:
        """Append every pending event of ``aggregates`` atomically; returns the last position.

        Raises ConcurrencyConflictError if any aggregate moved on since it was loaded.
        """
        pending = [(agg, agg.collect_events()) for agg in aggregates]
        stored = [self.mapper.to_stored_event(e) for _, events in pending for e in events]
        if not stored:
            return START
        meta_json = json.dumps(dict(meta), default=str)
        try:
            row = await self.pool.fetchrow(
                _INSERT,
                [s.originator_id for s in stored],
                [s.originator_version for s in stored],
                [s.topic for s in stored],
                [s.state for s in stored],
                [meta_json] * len(stored),
            )
        except asyncpg.UniqueViolationError as err:
            for agg, _ in pending:
                self._cache.pop(agg.id, None)
            raise ConcurrencyConflictError(str(err)) from err
        for agg, _ in pending:
            self._remember(agg)
        if row is None or row["position"] is None:
            raise RuntimeError("append returned no position")
        return Position(row["tx_id"], row["position"])

    def _remember(self, aggregate: Aggregate) -> None:
        self._cache[aggregate.id] = pickle.dumps(aggregate, protocol=pickle.HIGHEST_PROTOCOL)
        self._cache.move_to_end(aggregate.id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def forget(self, aggregate_id: UUID) -> None:
        self._cache.pop(aggregate_id, None)

    def decode(self, record: RecordedEvent) -> Any:
        """The domain event of a recorded row."""
        stored = StoredEvent(
            record.originator_id, record.originator_version, record.topic, record.state
        )
        return self.mapper.to_domain_event(stored)


async def read_settled(
    conn: asyncpg.Connection, after: Position, limit: int
) -> list[RecordedEvent]:
    """Rows committed after ``after`` whose transaction is older than every transaction still
    running: no later read can find a row that belongs before them."""
    rows = await conn.fetch(_SELECT_SETTLED, str(after.tx_id), after.position, limit)
    return [
        RecordedEvent(
            position=r["position"],
            tx_id=r["tx_id"],
            originator_id=r["originator_id"],
            originator_version=r["originator_version"],
            topic=r["topic"],
            state=r["state"],
            meta=json.loads(r["meta"]),
            recorded_at=r["recorded_at"],
        )
        for r in rows
    ]
