"""An in-memory event store for unit tests: the `EventStore` protocol without PostgreSQL.

For tests only (STYLE.md section 10: `Volumes` may run on it in unit tests and only there);
no production module imports it, and nothing falls back to it. It keeps what the asyncpg
store keeps, the same way: every event goes through the same mapper into a stored row
(topic and JSON state), a save is one atomic append whose rows get increasing positions
and one transaction id, ``(originator_id, originator_version)`` is unique (the primary key
that is the optimistic concurrency check), and every load replays rows into a private copy.
``tests/helpers/store_contract.py`` runs the same tests on both.

What it leaves out: the process's heads and group commit (`LogWriter`). Each handle is like
a process of its own; two handles on one `MemoryLog` are two processes writing one
database. A save yields to the event loop once before it checks and appends, as the round
trip to PostgreSQL would, so concurrent commands can lose the race and retry.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from cinderblock.store.eventstore import START, Position, RecordedEvent
from cinderblock.store.mapping import make_mapper
from cinderblock.store.writer import ConcurrencyConflictError, current_attempt

__all__ = ["MemoryEventStore", "MemoryLog"]

A = TypeVar("A", bound=Aggregate)


@dataclass
class MemoryLog:
    """The rows of one in-memory "database", in commit order."""

    rows: list[RecordedEvent] = field(default_factory=list)
    _by_key: set[tuple[UUID, int]] = field(default_factory=set)
    _tx_id: int = 0
    appends: int = 0  # atomic appends made (one per save that wrote something)
    conflicts: int = 0  # saves refused by the version check

    def of(self, aggregate_id: UUID) -> list[RecordedEvent]:
        return [r for r in self.rows if r.originator_id == aggregate_id]

    def append(self, stored: list[StoredEvent], meta: Mapping[str, Any]) -> Position:
        """All ``stored`` rows or none: the unique key is checked for every row first."""
        keys = [(s.originator_id, s.originator_version) for s in stored]
        if len(set(keys)) != len(keys) or any(k in self._by_key for k in keys):
            self.conflicts += 1
            clash = next((k for k in keys if k in self._by_key), keys[0])
            raise ConcurrencyConflictError(
                f"duplicate key (originator_id, originator_version)=({clash[0]}, {clash[1]})"
            )
        self._tx_id += 1
        self.appends += 1
        at = datetime.now(UTC)
        # What PostgreSQL's jsonb column gives back: JSON, non-JSON values as text.
        plain_meta = json.loads(json.dumps(dict(meta), default=str))
        for s in stored:
            self.rows.append(
                RecordedEvent(
                    position=len(self.rows) + 1,
                    tx_id=self._tx_id,
                    originator_id=s.originator_id,
                    originator_version=s.originator_version,
                    topic=s.topic,
                    state=s.state,
                    meta=dict(plain_meta),
                    recorded_at=at,
                )
            )
        self._by_key.update(keys)
        return Position(self._tx_id, self.rows[-1].position)

    def read_settled(self, after: Position, limit: int) -> list[RecordedEvent]:
        """Rows after ``after`` in (tx_id, position) order: every committed row is settled
        here, since nothing commits while a read runs."""
        return [r for r in self.rows if r.at > after][:limit]


class MemoryEventStore:
    """Loads and saves eventsourcing aggregates in a `MemoryLog` (its own unless given)."""

    def __init__(self, log: MemoryLog | None = None) -> None:
        self.log = log if log is not None else MemoryLog()
        self.mapper = make_mapper()

    def sibling(self) -> MemoryEventStore:
        """Another handle on the same log: another process writing the same database."""
        return MemoryEventStore(self.log)

    async def load(self, aggregate_id: UUID, cls: type[A]) -> A | None:
        aggregate: Any = None
        for row in self.log.of(aggregate_id):
            aggregate = self.decode(row).mutate(aggregate)
        if aggregate is not None and not isinstance(aggregate, cls):
            return None
        return aggregate  # type: ignore[no-any-return]

    async def save(self, *aggregates: Aggregate, meta: Mapping[str, Any]) -> Position:
        pending = [e for agg in aggregates for e in agg.collect_events()]
        if not pending:
            current = current_attempt()
            if current is not None:
                await current.settle()
            return START
        stored = [self.mapper.to_stored_event(e) for e in pending]
        await asyncio.sleep(0)  # the round trip: others may append meanwhile
        return self.log.append(stored, meta)

    def forget(self, aggregate_id: UUID) -> None:
        return None  # nothing is cached: every load replays the log

    def decode(self, record: RecordedEvent) -> Any:
        stored = StoredEvent(
            record.originator_id, record.originator_version, record.topic, record.state
        )
        return self.mapper.to_domain_event(stored)

    def read_settled(self, after: Position, limit: int) -> list[RecordedEvent]:
        return self.log.read_settled(after, limit)
