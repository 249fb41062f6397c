"""The usage ledger rebuilt in replay's one pass over the log.

Each volume and snapshot event is decoded once with the read models' events
(``Decoder.with_domain``) and applied to its aggregate's ``usage.cursor.VolumeCursor``, the
fold the billing consumer keeps: the ledger rule stays the one in ``usage.ledger``. A
volume's (a snapshot's) ledger depends on its own events only, so the workers of a parallel
replay fold the ledger of their share of the aggregates alongside their share of the read
models (``parallel.fold_share``). Below, "volume" stands for either.

The rows go to side tables (``billing_intervals``, ``billing_volumes`` and the billing
consumer's set-asides in ``billing_quarantine``) in the rebuild's side schema, closed
intervals as they close (binary COPY), every volume's open interval and applied version at
the end: memory holds the fold of the volumes still alive, never the log. ``swap`` then
refolds the volumes with events after the folded position (the log's tail, written while
the rest was folded) under the ledger's lock and moves the side tables in, so the billing
consumer, which waits on that lock, carries on from the rebuilt versions.

Same outcome as a sequential fold of every volume event in log order (what the billing
consumer does, one event at a time): an event the fold cannot take quarantines its volume
for the billing consumer (its ledger stays as the event before left it, its later events
are held), a version gap stops a volume where it is (the consumer applies the rest).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from cinderblock.readmodels.quarantine import (
    SetAside,
    clear,
    log_set_aside,
    record,
    retry_will_fix,
)
from cinderblock.readmodels.tables import q
from cinderblock.replay.decode import Decoder
from cinderblock.replay.source import END, history
from cinderblock.store.eventstore import Position
from cinderblock.store.mapping import event_name
from cinderblock.usage.cursor import VolumeCursor
from cinderblock.usage.schema import USAGE_DDL
from cinderblock.usage.store import INTERVAL_COLUMNS, interval_row

log = logging.getLogger(__name__)

# The stored topics of the events the billing consumer folds: Volume's and Snapshot's.
VOLUME_TOPICS = ("cinderblock.domain.volume:", "cinderblock.domain.snapshot:")

INTERVALS = "billing_intervals"
VOLUMES = "billing_volumes"
SET_ASIDE = "billing_quarantine"  # side only: the swap moves its rows into ``quarantine``
WRITE_EVERY = 10_000  # closed intervals buffered before a COPY


@dataclass
class LedgerReport:
    """What ``cinderblock replay`` reports of the ledger: volume events read, volumes,
    intervals, quarantined volumes."""

    events: int = 0
    volumes: int = 0
    intervals: int = 0
    quarantined: int = 0


async def prepare(conn: asyncpg.Connection, schema: str) -> None:
    """The ledger's tables in the side schema ``schema`` (their own DDL, indexes too) and
    a table like ``quarantine`` for the billing consumer's set-asides."""
    await conn.execute(f"SET search_path TO {q(schema)}, public")
    try:
        await conn.execute(USAGE_DDL)
    finally:
        await conn.execute("RESET search_path")
    await conn.execute(
        f"CREATE TABLE {q(schema)}.{SET_ASIDE} (LIKE public.quarantine INCLUDING ALL)"
    )


class LedgerFold:
    """Folds the volume events it is given (one process's share, in log order) into the
    side tables of ``schema``.

    ``whole``: each volume's events come from its first (``refold``); otherwise a volume
    first met past its first event (its ledger was complete and written, and it has events
    after all, or the log lacks its start) is refolded from its history by ``finish``.
    """

    def __init__(
        self, conn: asyncpg.Connection, schema: str, consumer: str, *, whole: bool = False
    ) -> None:
        self.conn = conn
        self.schema = schema
        self.consumer = consumer
        self.whole = whole
        self.cursors: dict[UUID, VolumeCursor] = {}
        self.stopped: dict[UUID, int] = {}  # volume → the version its fold failed at
        self.later: set[UUID] = set()
        self.events = 0
        self._intervals: list[tuple[Any, ...]] = []
        self._volumes: list[tuple[UUID, int]] = []
        self._aside: list[SetAside] = []

    def fold(self, items: Iterable[tuple[Sequence[Any], Any]]) -> None:
        """``(row, domain event or the error decoding it)`` of volume events in log order
        (``Decoder.with_domain``)."""
        cursors, stopped = self.cursors, self.stopped
        for r, event in items:
            self.events += 1
            vid, version = r[2], r[3]
            cursor = cursors.get(vid)
            if cursor is None:
                if version != 1 and not self.whole:
                    self.later.add(vid)
                    continue
                cursor = cursors[vid] = VolumeCursor(str(vid))
            if stopped and vid in stopped:
                name = event_name(r[4])
                self._aside.append(SetAside.behind(self.consumer, vid, version, name, stopped[vid]))
                continue
            if version != cursor.version + 1:
                continue  # a gap (a late commit): the consumer applies the rest
            try:
                if isinstance(event, BaseException):
                    raise event
                closed, opened = cursor.fold(event)
            except Exception as err:
                if retry_will_fix(err):
                    raise
                stopped[vid] = version
                name = event_name(r[4])
                self._aside.append(SetAside.failed(self.consumer, vid, version, name, err))
                continue
            if closed is not None:
                self._intervals.append(interval_row(vid, closed))
            if opened is None and not self.whole:  # gone: its ledger is complete
                del cursors[vid]
                self._volumes.append((vid, version))

    async def write(self, *, every: int = 1) -> None:
        """COPY the buffered rows (when there are at least ``every``)."""
        if len(self._intervals) >= every:
            await self.conn.copy_records_to_table(
                INTERVALS,
                schema_name=self.schema,
                records=self._intervals,
                columns=INTERVAL_COLUMNS,
            )
            self._intervals = []
        if len(self._volumes) >= every:
            await self.conn.copy_records_to_table(
                VOLUMES,
                schema_name=self.schema,
                records=self._volumes,
                columns=("volume_id", "version"),
            )
            self._volumes = []

    async def finish(self, decode: Decoder, upto: Position) -> None:
        """Write the rest: each volume's open interval and applied version, the set-asides;
        then refold the volumes met later in their story (up to ``upto``, the last row
        folded)."""
        for vid, cursor in self.cursors.items():
            if cursor.open is not None:
                self._intervals.append(interval_row(vid, cursor.open))
            failed = self.stopped.get(vid)
            self._volumes.append((vid, cursor.version if failed is None else failed - 1))
        self.cursors = {}
        await self.write()
        await record(self.conn, self._aside, table=f"{q(self.schema)}.{SET_ASIDE}")
        self._aside = []
        if self.later:
            await refold(self.conn, self.schema, self.consumer, decode, self.later, upto)
            self.later = set()


async def refold(
    conn: asyncpg.Connection,
    schema: str,
    consumer: str,
    decode: Decoder,
    volume_ids: Collection[UUID],
    upto: Position = END,
) -> None:
    """Fold each volume of ``volume_ids`` again from its first event up to ``upto`` into
    ``schema``'s side tables, in place of what they held of it."""
    ids = sorted(volume_ids)
    side = q(schema)
    await conn.execute(f"DELETE FROM {side}.{INTERVALS} WHERE volume_id = ANY($1::uuid[])", ids)
    await conn.execute(f"DELETE FROM {side}.{VOLUMES} WHERE volume_id = ANY($1::uuid[])", ids)
    await clear(conn, consumer, ids, table=f"{side}.{SET_ASIDE}")
    fold = LedgerFold(conn, schema, consumer, whole=True)
    for vid in ids:
        _, _, volume_events = decode.with_domain(
            await history(conn, vid, upto), consumer, VOLUME_TOPICS
        )
        fold.fold(volume_events)
        if len(fold.cursors) >= WRITE_EVERY:
            await fold.finish(decode, upto)
    await fold.finish(decode, upto)


async def catch_up(
    conn: asyncpg.Connection,
    schema: str,
    consumer: str,
    decode: Decoder,
    folded: Position,
    upto: Position = END,
) -> int:
    """Refold the volumes with events after ``folded`` up to ``upto`` (each from its first
    event to the end of the log: a refold replaces what the side tables hold of it).
    Returns the number of those events."""
    tail = await conn.fetch(
        "SELECT originator_id, count(*) AS n FROM events "
        "WHERE (tx_id, position) > ($1::text::xid8, $2) "
        "AND (tx_id, position) <= ($3::text::xid8, $4) AND topic LIKE ANY($5::text[]) "
        "GROUP BY originator_id",
        str(folded.tx_id),
        folded.position,
        str(upto.tx_id),
        upto.position,
        [t + "%" for t in VOLUME_TOPICS],
    )
    if tail:
        await refold(conn, schema, consumer, decode, [r["originator_id"] for r in tail])
    return sum(r["n"] for r in tail)


async def swap(
    conn: asyncpg.Connection,
    schema: str,
    consumer: str,
    decode: Decoder,
    folded: Position,
    events: int,
) -> LedgerReport:
    """In one transaction: hold the live ledger (EXCLUSIVE: the billing consumer waits,
    readers do not), refold the volumes with events after ``folded`` (``catch_up``), move
    the side tables in and the old ones out (to ``<schema>_old``), and make the billing
    consumer's quarantine what the rebuild found. ``events``: volume events folded so far."""
    side, retired = q(schema), q(f"{schema}_old")
    async with conn.transaction():
        await conn.execute(f"LOCK TABLE public.{VOLUMES}, public.{INTERVALS} IN EXCLUSIVE MODE")
        events += await catch_up(conn, schema, consumer, decode, folded)
        report = LedgerReport(
            events=events,
            volumes=await conn.fetchval(f"SELECT count(*) FROM {side}.{VOLUMES}"),
            intervals=await conn.fetchval(f"SELECT count(*) FROM {side}.{INTERVALS}"),
            quarantined=await conn.fetchval(
                f"SELECT count(*) FROM {side}.{SET_ASIDE} WHERE consumer = $1 AND NOT held",
                consumer,
            ),
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {retired}")
        await conn.execute(
            f"LOCK TABLE public.{VOLUMES}, public.{INTERVALS} IN ACCESS EXCLUSIVE MODE"
        )
        for table in (VOLUMES, INTERVALS):
            await conn.execute(f"ALTER TABLE public.{table} SET SCHEMA {retired}")
            await conn.execute(f"ALTER TABLE {side}.{table} SET SCHEMA public")
        await clear(conn, consumer)
        rows = await conn.fetch(
            f"INSERT INTO public.quarantine SELECT * FROM {side}.{SET_ASIDE} "
            "ON CONFLICT DO NOTHING "
            "RETURNING consumer, aggregate_id, version, event_name, error, held, tx_id, position"
        )
    log_set_aside(SetAside(**dict(r)) for r in rows)
    log.info("billing ledger rebuilt", extra={"events": report.events, "volumes": report.volumes})
    return report
