"""The ledger in PostgreSQL: apply one volume's events idempotently, rebuild everything from
the event table through the same fold, and report GiB·hours over a window."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from eventsourcing.persistence import StoredEvent

from cinderblock.readmodels.quarantine import (
    SetAside,
    clear,
    log_set_aside,
    record,
    retry_will_fix,
)
from cinderblock.store.mapping import event_name, make_mapper
from cinderblock.usage.ledger import BILLED, Interval, advance, volume_intervals, volume_state
from cinderblock.usage.schema import USAGE_DDL

log = logging.getLogger(__name__)

VOLUME_TOPICS = "cinderblock.domain.volume:%"

_EVENTS_AFTER = """
SELECT originator_version, topic, state FROM events
WHERE originator_id = $1 AND originator_version > $2 AND originator_version <= $3
ORDER BY originator_version
"""

_INSERT_INTERVAL = """
INSERT INTO billing_intervals (volume_id, start_version, project_id, volume_type_id, size_gb,
    usage_class, started_at, ended_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""

_COLUMNS = (
    "volume_id",
    "start_version",
    "project_id",
    "volume_type_id",
    "size_gb",
    "usage_class",
    "started_at",
    "ended_at",
)


def _row(i: Interval) -> tuple[Any, ...]:
    return (
        UUID(i.volume_id),
        i.start_version,
        i.project_id,
        i.volume_type_id,
        i.size_gb,
        i.usage_class.value,
        i.started_at,
        i.ended_at,
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


async def apply_volume(
    conn: asyncpg.Connection, volume_id: UUID, version: int, events: Sequence[Any]
) -> bool:
    """Bring the volume's ledger to ``version`` (``events``: its events from version 1 at
    least that far). The intervals and the applied version change in one transaction; at or
    below the applied version nothing changes. Returns whether anything was applied."""
    upto = [e for e in events if e.originator_version <= version]
    if not upto or upto[-1].originator_version != version:
        raise LookupError(f"volume {volume_id}: events up to version {version} not all stored")
    intervals = volume_intervals(str(volume_id), upto)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO billing_volumes (volume_id, version) VALUES ($1, 0) "
            "ON CONFLICT (volume_id) DO NOTHING",
            volume_id,
        )
        applied = await conn.fetchval(
            "SELECT version FROM billing_volumes WHERE volume_id = $1 FOR UPDATE", volume_id
        )
        if applied >= version:
            return False
        await conn.execute("DELETE FROM billing_intervals WHERE volume_id = $1", volume_id)
        await conn.executemany(_INSERT_INTERVAL, [_row(i) for i in intervals])
        await conn.execute(
            "UPDATE billing_volumes SET version = $2, updated_at = now() WHERE volume_id = $1",
            volume_id,
            version,
        )
    return True


async def apply_step(
    conn: asyncpg.Connection,
    volume_id: UUID,
    version: int,
    closed: Interval | None,
    opened: Interval | None,
) -> bool:
    """The ledger change of one event (``version``) on top of the ledger as of the event
    before it: close ``closed``, insert ``opened``. Same guard as ``apply_volume``: at or
    below the applied version nothing changes. Returns whether anything was applied."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO billing_volumes (volume_id, version) VALUES ($1, 0) "
            "ON CONFLICT (volume_id) DO NOTHING",
            volume_id,
        )
        applied = await conn.fetchval(
            "SELECT version FROM billing_volumes WHERE volume_id = $1 FOR UPDATE", volume_id
        )
        if applied >= version:
            return False
        if closed is not None:
            await conn.execute(
                "UPDATE billing_intervals SET ended_at = $3 "
                "WHERE volume_id = $1 AND start_version = $2",
                volume_id,
                closed.start_version,
                closed.ended_at,
            )
        if opened is not None:
            await conn.execute(_INSERT_INTERVAL, *_row(opened))
        await conn.execute(
            "UPDATE billing_volumes SET version = $2, updated_at = now() WHERE volume_id = $1",
            volume_id,
            version,
        )
    return True


@dataclass
class _Folding:
    volume: Any = None
    open: Interval | None = None
    version: int = 0


@dataclass(frozen=True)
class RebuildReport:
    events: int
    volumes: int
    intervals: int
    quarantined: int = 0  # volumes with an event the fold could not take


async def rebuild_ledger(dsn: str, *, page: int = 5000, consumer: str = "billing") -> RebuildReport:
    """Rebuild the whole ledger from the event table through the same fold the consumer
    uses, in one transaction (readers see the old ledger until it commits; the consumer
    waits on the lock and then carries on from the rebuilt versions).

    An event the fold cannot take quarantines its volume (``cinderblock.readmodels.
    quarantine``): its ledger stays as the event before left it and its later events are
    held. The billing consumer's (``consumer``) quarantine becomes what this rebuild
    found: a volume whose events fold now (a fixed version) is released."""
    reader = EventReader()
    aside: list[SetAside] = []
    stopped: dict[UUID, int] = {}
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(USAGE_DDL)
        async with conn.transaction():
            await conn.execute("LOCK TABLE billing_volumes, billing_intervals IN EXCLUSIVE MODE")
            volumes: dict[UUID, _Folding] = {}
            closed: list[Interval] = []
            after, count = 0, 0
            while True:
                rows = await conn.fetch(
                    "SELECT position, originator_id, originator_version, topic, state "
                    "FROM events WHERE position > $1 AND topic LIKE $2 "
                    "ORDER BY position LIMIT $3",
                    after,
                    VOLUME_TOPICS,
                    page,
                )
                if not rows:
                    break
                after = rows[-1]["position"]
                count += len(rows)
                for r in rows:
                    vid, version = r["originator_id"], r["originator_version"]
                    f = volumes.setdefault(vid, _Folding())
                    name = event_name(r["topic"])
                    if vid in stopped:
                        aside.append(SetAside.behind(consumer, vid, version, name, stopped[vid]))
                        continue
                    if version != f.version + 1:
                        continue  # a gap (a late commit): the consumer applies the rest
                    try:
                        event = reader.decode(vid, version, r["topic"], r["state"])
                        volume = event.mutate(f.volume)
                        done, opened = advance(
                            str(vid), f.open, volume_state(volume), version, event.timestamp
                        )
                    except Exception as err:
                        if retry_will_fix(err):
                            raise
                        stopped[vid] = version
                        aside.append(SetAside.failed(consumer, vid, version, name, err))
                        continue
                    f.volume, f.version, f.open = volume, version, opened
                    if done is not None:
                        closed.append(done)
            intervals = closed + [f.open for f in volumes.values() if f.open is not None]
            await conn.execute("DELETE FROM billing_intervals")
            await conn.execute("DELETE FROM billing_volumes")
            await conn.copy_records_to_table(
                "billing_intervals", records=[_row(i) for i in intervals], columns=_COLUMNS
            )
            await conn.copy_records_to_table(
                "billing_volumes",
                records=[(vid, f.version) for vid, f in volumes.items()],
                columns=("volume_id", "version"),
            )
            await clear(conn, consumer)
            recorded = await record(conn, aside)
    finally:
        await conn.close()
    log_set_aside(recorded)
    log.info("billing ledger rebuilt", extra={"events": count, "volumes": len(volumes)})
    return RebuildReport(count, len(volumes), len(intervals), len(stopped))


@dataclass(frozen=True)
class UsageRow:
    project_id: str
    volume_id: str
    volume_type_id: str
    hours: Decimal
    gib_hours: Decimal


_USAGE = """
WITH clipped AS (
    SELECT project_id, volume_id, volume_type_id, size_gb,
           extract(epoch FROM least(coalesce(ended_at, $4), $3) - greatest(started_at, $2))
               AS seconds
    FROM billing_intervals
    WHERE usage_class = ANY($5::text[])
      AND ($1::text IS NULL OR project_id = $1)
      AND started_at < $3 AND (ended_at IS NULL OR ended_at > $2)
)
SELECT project_id, volume_id::text AS volume_id, volume_type_id,
       sum(seconds) / 3600 AS hours, sum(size_gb * seconds) / 3600 AS gib_hours
FROM clipped WHERE seconds > 0
GROUP BY project_id, volume_id, volume_type_id
ORDER BY project_id, volume_id, volume_type_id
"""


async def usage(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    project_id: str | None,
    since: datetime,
    until: datetime,
    as_of: datetime | None = None,
) -> list[UsageRow]:
    """Billed hours and GiB·hours per (project, volume, type) inside [since, until), each
    interval clipped to the window; an open interval runs to ``as_of`` (default now)."""
    at = as_of if as_of is not None else await conn.fetchval("SELECT now()")
    rows = await conn.fetch(_USAGE, project_id, since, until, at, sorted(c.value for c in BILLED))
    return [
        UsageRow(
            r["project_id"],
            r["volume_id"],
            r["volume_type_id"],
            Decimal(r["hours"]),
            Decimal(r["gib_hours"]),
        )
        for r in rows
    ]
