"""The ledger in PostgreSQL: apply one volume's (or snapshot's) events idempotently and
report GiB·hours over a window. The whole ledger is rebuilt by ``cinderblock replay`` in its
one pass over the log (``cinderblock.replay.ledger``), through the same fold."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any
from uuid import UUID

import asyncpg
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.volume import Volume
from cinderblock.store.mapping import make_mapper
from cinderblock.usage.ledger import BILLED, Interval, Resource, volume_intervals
from cinderblock.wire.envelope import SCHEMA_VERSION, ReceivedEnvelope, event_type

_EVENTS_AFTER = """
SELECT originator_version, topic, state FROM events
WHERE originator_id = $1 AND originator_version > $2 AND originator_version <= $3
ORDER BY originator_version
"""

_EVENTS_OF_MANY = """
SELECT e.originator_id, e.originator_version, e.topic, e.state
FROM unnest($1::uuid[], $2::int[], $3::int[]) AS w(id, after, upto)
JOIN events e ON e.originator_id = w.id
    AND e.originator_version > w.after AND e.originator_version <= w.upto
ORDER BY e.originator_id, e.originator_version
"""

INTERVAL_COLUMNS = (
    "volume_id",
    "start_version",
    "project_id",
    "volume_type_id",
    "size_gb",
    "usage_class",
    "started_at",
    "ended_at",
    "resource",
    "snapshot_volume_id",
)


def interval_row(volume_id: UUID, i: Interval) -> tuple[Any, ...]:
    """An interval as a ``billing_intervals`` row, in ``INTERVAL_COLUMNS`` order."""
    return (
        volume_id,
        i.start_version,
        i.project_id,
        i.volume_type_id,
        i.size_gb,
        i.usage_class.value,
        i.started_at,
        i.ended_at,
        i.resource.value,
        None if i.snapshot_volume_id is None else UUID(i.snapshot_volume_id),
    )


class EventReader:
    """Reads and decodes stored events (the same mapper the event store uses).

    Decoded events of recently read aggregates are kept (``cache_size`` aggregates, least
    recently used out): a consumer reading a volume's story at each of its events then
    fetches only the events it has not seen. Stored events never change, so the cache is
    never stale; it only ever lacks the newest ones.
    """

    def __init__(self, *, cache_size: int = 0) -> None:
        self.mapper = make_mapper()
        self.cache_size = cache_size
        self._cache: OrderedDict[UUID, list[Any]] = OrderedDict()

    def decode(self, originator_id: UUID, version: int, topic: str, state: bytes) -> Any:
        return self.mapper.to_domain_event(StoredEvent(originator_id, version, topic, state))

    async def events_of(
        self, conn: asyncpg.Connection | asyncpg.Pool, aggregate_id: UUID, upto: int
    ) -> list[Any]:
        """The aggregate's events from version 1 up to ``upto`` (fewer if not stored)."""
        known = self._cache.get(aggregate_id, [])
        if len(known) < upto:
            rows = await conn.fetch(_EVENTS_AFTER, aggregate_id, len(known), upto)
            known = known + [
                self.decode(aggregate_id, r["originator_version"], r["topic"], r["state"])
                for r in rows
            ]
            if self.cache_size:
                self._cache[aggregate_id] = known
        if self.cache_size and aggregate_id in self._cache:
            self._cache.move_to_end(aggregate_id)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return known[:upto]

    async def read_ahead(
        self, conn: asyncpg.Connection | asyncpg.Pool, wanted: Mapping[UUID, int]
    ) -> None:
        """Fetch the events ``events_of`` would lack for several aggregates (aggregate →
        up to which version) in one query; a no-op without a cache."""
        if not self.cache_size:
            return
        missing = {
            aid: (len(self._cache.get(aid, [])), upto)
            for aid, upto in wanted.items()
            if len(self._cache.get(aid, [])) < upto
        }
        if not missing:
            return
        rows = await conn.fetch(
            _EVENTS_OF_MANY,
            list(missing),
            [after for after, _ in missing.values()],
            [upto for _, upto in missing.values()],
        )
        found: dict[UUID, list[Any]] = {}
        for r in rows:
            aid = r["originator_id"]
            found.setdefault(aid, []).append(
                self.decode(aid, r["originator_version"], r["topic"], r["state"])
            )
        for aid, events in found.items():
            self._cache[aid] = self._cache.get(aid, []) + events
            self._cache.move_to_end(aid)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def from_envelope(self, env: ReceivedEnvelope) -> Any | None:
        """The volume or snapshot event an envelope carries, as the store would decode it
        (its fields are in ``data``: the relay publishes every field, upcast, and these
        events hold only JSON's own types), or None when the envelope cannot say (another
        schema, an event type this code does not know): the caller reads the store then."""
        aggregate = _BILLED.get(env.aggregate)
        if env.schema_version != SCHEMA_VERSION or aggregate is None:
            return None
        cls = _event_classes(aggregate).get(env.type)
        if cls is None:
            return None
        state = dict(env.data)
        state.pop("class_version", None)
        state["originator_id"] = UUID(env.aggregate_id)
        state["originator_version"] = env.version
        state["timestamp"] = env.occurred_at.astimezone(UTC)
        if issubclass(cls, aggregate.Created):
            state["originator_topic"] = get_topic(aggregate)
        event = object.__new__(cls)
        event.__dict__.update(state)
        return event


_BILLED: dict[str, type[Any]] = {Resource.VOLUME: Volume, Resource.SNAPSHOT: Snapshot}


@cache
def _event_classes(aggregate: type[Any]) -> dict[str, type]:
    """Envelope type (``volume.extended``) → the aggregate's event class (names that two
    classes would share are left out: the store decides those)."""
    found: dict[str, type] = {}
    clashes: set[str] = set()
    prefix = aggregate.__name__
    for name in dir(aggregate):
        cls = getattr(aggregate, name)
        if not (isinstance(cls, type) and issubclass(cls, DomainEvent)):
            continue
        if cls.__qualname__ != f"{prefix}.{name}":
            continue
        key = event_type(cls.__qualname__)
        if key in found and found[key] is not cls:
            clashes.add(key)
        found[key] = cls
    return {k: v for k, v in found.items() if k not in clashes}


@dataclass(frozen=True)
class Refold:
    """A volume's whole ledger as of ``version``: the intervals of the full fold."""

    version: int
    intervals: list[Interval]


@dataclass(frozen=True)
class StepChange:
    """The ledger change of one event (``version``) on top of the ledger as of the event
    before it: ``closed`` ended, ``opened`` began (both None: nothing changed but the
    version)."""

    version: int
    closed: Interval | None = None
    opened: Interval | None = None


Change = Refold | StepChange


def refold(volume_id: UUID, version: int, events: Sequence[Any]) -> Refold:
    """The ledger as the full fold of ``events`` (from version 1 at least to ``version``)
    leaves it; raises what the fold raises on an event it cannot take."""
    upto = [e for e in events if e.originator_version <= version]
    if not upto or upto[-1].originator_version != version:
        raise LookupError(f"volume {volume_id}: events up to version {version} not all stored")
    return Refold(version, volume_intervals(str(volume_id), upto))


@dataclass
class _Net:
    """What one volume's changes amount to on top of its applied version."""

    version: int
    replace: bool = False  # its intervals are deleted first (a refold)
    inserts: dict[int, Interval] = field(default_factory=dict)  # start_version → interval
    closes: dict[int, datetime] = field(default_factory=dict)  # start_version → ended_at


class LedgerChanges:
    """Ledger changes collected over a batch of events, per volume in the order they were
    made, written together by ``apply_changes`` (one transaction, one statement per kind
    of change whatever the number of volumes)."""

    def __init__(self) -> None:
        self._changes: dict[UUID, list[Change]] = {}

    def add(self, volume_id: UUID, change: Change) -> None:
        self._changes.setdefault(volume_id, []).append(change)

    def refold(self, volume_id: UUID, version: int, events: Sequence[Any]) -> None:
        self.add(volume_id, refold(volume_id, version, events))

    def step(
        self,
        volume_id: UUID,
        version: int,
        closed: Interval | None = None,
        opened: Interval | None = None,
    ) -> None:
        self.add(volume_id, StepChange(version, closed, opened))

    def volumes(self) -> list[UUID]:
        return sorted(self._changes)

    def only(self, volume_ids: Sequence[UUID]) -> LedgerChanges:
        part = LedgerChanges()
        part._changes = {v: self._changes[v] for v in volume_ids if v in self._changes}
        return part

    def __len__(self) -> int:
        return len(self._changes)

    def net(self, volume_id: UUID, applied: int) -> _Net | None:
        """The volume's changes on top of the ledger at ``applied`` (None: nothing to do,
        every change is at or below it). Raises ``_Gap`` when a step does not follow the
        ledger (an earlier change never landed): the caller refolds from the store."""
        net = _Net(applied)
        for change in self._changes[volume_id]:
            if change.version <= net.version:
                continue  # applied already (a redelivery, or older than a refold)
            if isinstance(change, Refold):
                net.replace = True
                net.inserts = {i.start_version: i for i in change.intervals}
                net.closes = {}
            else:
                if change.version != net.version + 1:
                    raise _Gap(max(c.version for c in self._changes[volume_id]))
                if change.closed is not None:
                    start = change.closed.start_version
                    if start in net.inserts:
                        net.inserts[start] = change.closed
                    else:
                        net.closes[start] = change.closed.ended_at  # type: ignore[assignment]
                if change.opened is not None:
                    net.inserts[change.opened.start_version] = change.opened
            net.version = change.version
        return None if net.version == applied else net


class _Gap(Exception):  # noqa: N818 - control flow inside apply_changes only
    def __init__(self, upto: int) -> None:
        self.upto = upto


# Every volume of the write gets its row, locked (in one order: no deadlock between two
# writers), and its applied version back.
_LOCK_VOLUMES = """
INSERT INTO billing_volumes (volume_id, version) SELECT unnest($1::uuid[]), 0
ON CONFLICT (volume_id) DO UPDATE SET version = billing_volumes.version
RETURNING volume_id, version
"""

_INSERT_INTERVALS = f"""
INSERT INTO billing_intervals ({", ".join(INTERVAL_COLUMNS)})
SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[],
    $7::timestamptz[], $8::timestamptz[], $9::text[], $10::uuid[])
"""

_CLOSE_INTERVALS = """
UPDATE billing_intervals b SET ended_at = u.ended_at
FROM unnest($1::uuid[], $2::int[], $3::timestamptz[]) AS u(volume_id, start_version, ended_at)
WHERE b.volume_id = u.volume_id AND b.start_version = u.start_version
"""

_SET_VERSIONS = """
UPDATE billing_volumes b SET version = u.version, updated_at = now()
FROM unnest($1::uuid[], $2::int[]) AS u(volume_id, version)
WHERE b.volume_id = u.volume_id
"""


async def apply_changes(
    conn: asyncpg.Connection, changes: LedgerChanges, reader: EventReader
) -> list[UUID]:
    """Write ``changes`` in one transaction; returns the volumes whose ledger changed.

    Idempotent: each volume's applied version is read (locked) first, and only its changes
    above it are written, with the version, in the same transaction, so a redelivered
    batch, or one written before a crash that kept it from being acked, changes nothing.
    A volume whose steps do not follow its applied version (an earlier write that never
    landed) is refolded from its stored events (read through ``reader`` on ``conn``)."""
    ids = changes.volumes()
    if not ids:
        return []
    async with conn.transaction():
        applied = {r["volume_id"]: r["version"] for r in await conn.fetch(_LOCK_VOLUMES, ids)}
        nets: dict[UUID, _Net] = {}
        for vid in ids:
            try:
                net = changes.net(vid, applied[vid])
            except _Gap as gap:
                events = await reader.events_of(conn, vid, gap.upto)
                refolded = LedgerChanges()
                refolded.refold(vid, gap.upto, events)
                net = refolded.net(vid, applied[vid])
            if net is not None:
                nets[vid] = net
        if not nets:
            return []
        replaced = [vid for vid, net in nets.items() if net.replace]
        if replaced:
            await conn.execute(
                "DELETE FROM billing_intervals WHERE volume_id = ANY($1::uuid[])", replaced
            )
        closes = [(vid, s, at) for vid, net in nets.items() for s, at in net.closes.items()]
        if closes:
            await conn.execute(_CLOSE_INTERVALS, *_columns(closes, 3))
        inserts = [interval_row(v, i) for v, net in nets.items() for i in net.inserts.values()]
        if inserts:
            await conn.execute(_INSERT_INTERVALS, *_columns(inserts, len(INTERVAL_COLUMNS)))
        await conn.execute(_SET_VERSIONS, list(nets), [net.version for net in nets.values()])
    return list(nets)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows → one list per column (for ``unnest``)."""
    return [[r[c] for r in rows] for c in range(width)]


@dataclass(frozen=True)
class UsageRow:
    """One line of usage: a volume's under one type, or (``resource`` ``snapshot``) a
    snapshot's: then ``volume_id`` is its volume and ``snapshot_id`` the snapshot."""

    project_id: str
    volume_id: str
    volume_type_id: str
    hours: Decimal
    gib_hours: Decimal
    resource: str = Resource.VOLUME.value
    snapshot_id: str | None = None


_USAGE = """
WITH clipped AS (
    SELECT project_id, volume_id, volume_type_id, size_gb, resource, snapshot_volume_id,
           extract(epoch FROM least(coalesce(ended_at, $4), $3) - greatest(started_at, $2))
               AS seconds
    FROM billing_intervals
    WHERE usage_class = ANY($5::text[])
      AND ($1::text IS NULL OR project_id = $1)
      AND started_at < $3 AND (ended_at IS NULL OR ended_at > $2)
)
SELECT project_id, resource, volume_id::text AS billed_id,
       snapshot_volume_id::text AS snapshot_volume_id, volume_type_id,
       sum(seconds) / 3600 AS hours, sum(size_gb * seconds) / 3600 AS gib_hours
FROM clipped WHERE seconds > 0
GROUP BY project_id, resource, volume_id, snapshot_volume_id, volume_type_id
ORDER BY project_id, resource DESC, volume_id, volume_type_id
"""


async def usage(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    project_id: str | None,
    since: datetime,
    until: datetime,
    as_of: datetime | None = None,
) -> list[UsageRow]:
    """Billed hours and GiB·hours per (project, volume, type) and per (project, snapshot,
    type) inside [since, until), each interval clipped to the window; an open interval runs
    to ``as_of`` (default now). Volumes first, then snapshots."""
    at = as_of if as_of is not None else await conn.fetchval("SELECT now()")
    rows = await conn.fetch(_USAGE, project_id, since, until, at, sorted(c.value for c in BILLED))
    return [
        UsageRow(
            r["project_id"],
            r["snapshot_volume_id"] if r["resource"] == Resource.SNAPSHOT else r["billed_id"],
            r["volume_type_id"],
            Decimal(r["hours"]),
            Decimal(r["gib_hours"]),
            r["resource"],
            r["billed_id"] if r["resource"] == Resource.SNAPSHOT else None,
        )
        for r in rows
    ]
