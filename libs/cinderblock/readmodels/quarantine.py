"""Quarantine: no single event stops a consumer.

When a consumer (a projection, the relay, a JetStream consumer that keeps its aggregates'
order) fails on an event in a way no retry will fix, that event and its error are recorded,
its aggregate's later events are set aside behind it (``held``: never applied on top of a
hole), and every other aggregate keeps flowing. The one rule, used by the projector
(``projections.apply_batch``), replay (``rowstore.Folder``), the relay and the bus's
consumers (``ConsumerQuarantine``): which errors a retry fixes (``retry_will_fix``), what is
recorded (``SetAside`` rows in the ``quarantine`` table), what is logged, what
``/healthcheck`` and ``cinderblock verify`` report (``summary``, ``listing``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from cinderblock.runtime.outage import database_unavailable
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)

TABLE = "quarantine"

# SQLSTATE classes of failures of the moment: connection (08), invalid transaction state
# (25: an earlier failure in the same transaction), rollback (40: serialization failure,
# deadlock), insufficient resources (53), object in use / lock not available (55), operator
# intervention (57: canceled, shutting down), system error (58), internal error (XX).
_TRANSIENT_CLASSES = frozenset({"08", "25", "40", "53", "55", "57", "58", "XX"})
_TRANSIENT_STATES = frozenset({"42501"})  # insufficient privilege: a deployment, not an event


def retry_will_fix(err: BaseException) -> bool:
    """Whether applying the same event again may succeed.

    True for the moment's failures (connection lost, timeouts, serialization failures,
    deadlocks, lock timeouts, exhausted resources, a server shutting down): those are
    retried as before. False for what the event itself causes: data errors (a string
    PostgreSQL cannot store, a value out of range), constraint violations, and exceptions
    raised by decoding or projection code on the event's data. An exception may declare
    itself with a boolean ``retry_will_fix`` attribute (``bus.jetstream.UnpublishableError``).
    """
    declared = getattr(err, "retry_will_fix", None)
    if isinstance(declared, bool):
        return declared
    if database_unavailable(err):  # the one rule of what an outage is
        return True
    if isinstance(err, OSError | asyncpg.InterfaceError | MemoryError):
        return True  # OSError covers ConnectionError and TimeoutError
    sqlstate = getattr(err, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_STATES
    return False


def describe(err: BaseException) -> str:
    """The error on one line (asyncpg puts PostgreSQL's DETAIL on a line of its own), with
    what a text column cannot hold escaped: the error may quote the event's bad string."""
    text = " ".join(f"{type(err).__name__}: {err}".split())[:2000].replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class SetAside:
    """One event a consumer did not apply: the one that failed, or one held behind it."""

    consumer: str
    aggregate_id: UUID
    version: int
    event_name: str
    error: str
    held: bool = False
    tx_id: int | None = None  # the event's place in the log (looked up when not given)
    position: int | None = None

    @classmethod
    def failed(
        cls,
        consumer: str,
        aggregate_id: UUID,
        version: int,
        event_name: str,
        err: BaseException,
        *,
        at: tuple[int, int] | None = None,
    ) -> SetAside:
        tx_id, position = at if at is not None else (None, None)
        return cls(
            consumer, aggregate_id, version, event_name, describe(err), False, tx_id, position
        )

    @classmethod
    def behind(
        cls,
        consumer: str,
        aggregate_id: UUID,
        version: int,
        event_name: str,
        since: int,
        *,
        at: tuple[int, int] | None = None,
    ) -> SetAside:
        """A later event of an aggregate quarantined at version ``since``."""
        tx_id, position = at if at is not None else (None, None)
        error = f"held: quarantined since version {since}"
        return cls(consumer, aggregate_id, version, event_name, error, True, tx_id, position)


_RECORD = """
INSERT INTO {table} (consumer, aggregate_id, version, event_name, held, error, tx_id, position)
SELECT u.consumer, u.aggregate_id, u.version, u.event_name, u.held, u.error,
       coalesce(u.tx_id, e.tx_id::text::bigint), coalesce(u.position, e.position)
FROM unnest($1::text[], $2::uuid[], $3::int[], $4::text[], $5::boolean[], $6::text[],
            $7::bigint[], $8::bigint[])
     AS u(consumer, aggregate_id, version, event_name, held, error, tx_id, position)
LEFT JOIN events e ON e.originator_id = u.aggregate_id AND e.originator_version = u.version
ON CONFLICT (consumer, aggregate_id, version) DO NOTHING
RETURNING consumer, aggregate_id, version, event_name, error, held, tx_id, position
"""


async def record(
    conn: asyncpg.Connection | asyncpg.Pool, entries: Sequence[SetAside], *, table: str = TABLE
) -> list[SetAside]:
    """Store ``entries`` (the log positions filled in from the event table); returns those
    not recorded before (a redelivered or re-read event keeps its first record)."""
    if not entries:
        return []
    rows = await conn.fetch(
        _RECORD.format(table=table),
        [e.consumer for e in entries],
        [e.aggregate_id for e in entries],
        [e.version for e in entries],
        [e.event_name for e in entries],
        [e.held for e in entries],
        [e.error for e in entries],
        [e.tx_id for e in entries],
        [e.position for e in entries],
    )
    return [SetAside(**dict(r)) for r in rows]


def log_set_aside(entries: Iterable[SetAside]) -> None:
    """One structured line per event set aside (an error for the one that failed)."""
    for e in entries:
        extra: dict[str, Any] = {
            "consumer": e.consumer,
            "aggregate_id": str(e.aggregate_id),
            "event": e.event_name,
            "version": e.version,
            "position": e.position,
            "error": e.error,
            "held": e.held,
        }
        if e.event_name.startswith(("Volume.", "volume.")):
            extra["volume_id"] = str(e.aggregate_id)
        if e.held:
            log.warning("event held behind a quarantined one", extra=extra)
        else:
            log.error("event quarantined: its aggregate's later events are held", extra=extra)


async def stopped_at(
    conn: asyncpg.Connection | asyncpg.Pool,
    consumer: str,
    aggregate_ids: Sequence[UUID] | None = None,
    *,
    table: str = TABLE,
) -> dict[UUID, int]:
    """Quarantined aggregates of ``consumer`` (of ``aggregate_ids`` when given) → the
    version of the event that failed (that one and every later one are not applied)."""
    sql = f"SELECT aggregate_id, version FROM {table} WHERE consumer = $1 AND NOT held"
    if aggregate_ids is None:
        rows = await conn.fetch(sql, consumer)
    else:
        rows = await conn.fetch(
            sql + " AND aggregate_id = ANY($2::uuid[])", consumer, aggregate_ids
        )
    return {r["aggregate_id"]: r["version"] for r in rows}


async def clear(
    conn: asyncpg.Connection,
    consumer: str,
    aggregate_ids: Sequence[UUID] | None = None,
    *,
    table: str = TABLE,
) -> int:
    """Forget ``consumer``'s quarantine (of ``aggregate_ids`` only, when given)."""
    if aggregate_ids is None:
        done = await conn.execute(f"DELETE FROM {table} WHERE consumer = $1", consumer)
    else:
        done = await conn.execute(
            f"DELETE FROM {table} WHERE consumer = $1 AND aggregate_id = ANY($2::uuid[])",
            consumer,
            aggregate_ids,
        )
    return int(done.rpartition(" ")[2])


@dataclass(frozen=True)
class Quarantined:
    """A quarantined aggregate of one consumer: the event that failed, how many wait."""

    consumer: str
    aggregate_id: UUID
    version: int
    event_name: str
    error: str
    tx_id: int | None
    position: int | None
    at: datetime
    held: int  # later events set aside behind it

    def __str__(self) -> str:
        where = f" at {self.tx_id}:{self.position}" if self.position is not None else ""
        return (
            f"quarantined: {self.consumer} {self.aggregate_id} v{self.version} "
            f"{self.event_name}{where}: {self.error} ({self.held} later event(s) held)"
        )


async def listing(
    conn: asyncpg.Connection, consumer: str | None = None, *, table: str = TABLE
) -> list[Quarantined]:
    rows = await conn.fetch(
        f"""
        SELECT f.consumer, f.aggregate_id, f.version, f.event_name, f.error, f.tx_id,
               f.position, f.at,
               (SELECT count(*) FROM {table} h WHERE h.consumer = f.consumer
                  AND h.aggregate_id = f.aggregate_id AND h.held)::int AS held
        FROM {table} f
        WHERE NOT f.held AND ($1::text IS NULL OR f.consumer = $1)
        ORDER BY f.consumer, f.at, f.aggregate_id
        """,
        consumer,
    )
    return [Quarantined(**dict(r)) for r in rows]


async def summary(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    """Consumer → how many aggregates it has quarantined (only consumers that have some)."""
    rows = await conn.fetch(
        f"SELECT consumer, count(*)::int AS n FROM {TABLE} WHERE NOT held "
        "GROUP BY consumer ORDER BY consumer"
    )
    return {r["consumer"]: r["n"] for r in rows}


async def park(
    conn: asyncpg.Connection | asyncpg.Pool,
    consumer: str,
    subject: str,
    payload: bytes,
    error: str,
    *,
    msg_id: str | None = None,
    deliveries: int = 0,
) -> None:
    """Keep a message a consumer gave up on (or could not send) in ``dead_letters``."""
    await conn.execute(
        "INSERT INTO dead_letters (consumer, subject, msg_id, deliveries, error, payload) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        consumer,
        subject,
        msg_id,
        deliveries,
        error,
        payload,
    )


class Message(Protocol):
    """What is read of a JetStream message (``nats.aio.msg.Msg``)."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def metadata(self) -> Any: ...


class ConsumerQuarantine:
    """The bus's gate (``bus.jetstream.Gate``) for one durable consumer.

    A message that cannot be decoded is parked at once (no handler could use it). With
    ``hold`` (a consumer that applies each aggregate's events in order, like billing): a
    message whose last delivery failed with an error no retry fixes quarantines its
    aggregate, and that aggregate's later messages are recorded as held and acked without
    being handled. A last failure a retry could fix (an outage) parks the message only.
    Quarantined aggregates are cached and re-read every ``refresh`` seconds, so one cleared
    by ``cinderblock replay`` flows again.
    """

    def __init__(
        self, pool: asyncpg.Pool, consumer: str, *, hold: bool = True, refresh: float = 2.0
    ) -> None:
        self.pool = pool
        self.consumer = consumer
        self.hold = hold
        self.refresh = refresh
        self._stopped: dict[UUID, int] = {}
        self._read_at = float("-inf")

    async def admit(self, msg: Message) -> bool:
        """False: the message was set aside (recorded); ack it without handling it."""
        try:
            env = ReceivedEnvelope.model_validate_json(msg.data)
            aggregate_id = UUID(env.aggregate_id)
        except ValueError as err:  # pydantic's ValidationError is a ValueError
            log.error(
                "undecodable message parked",
                extra={"consumer": self.consumer, "subject": msg.subject, "error": describe(err)},
            )
            deliveries = msg.metadata.num_delivered
            await park(
                self.pool,
                self.consumer,
                msg.subject,
                msg.data,
                describe(err),
                deliveries=deliveries,
            )
            return False
        if not self.hold:
            return True
        if time.monotonic() - self._read_at > self.refresh:
            self._stopped = await stopped_at(self.pool, self.consumer)
            self._read_at = time.monotonic()
        since = self._stopped.get(aggregate_id)
        if since is None or env.version < since:
            return True
        async with self.pool.acquire() as conn, conn.transaction():
            still = await stopped_at(conn, self.consumer, [aggregate_id])
            if aggregate_id not in still:  # released since the cache was read
                self._stopped.pop(aggregate_id, None)
                return True
            entry = SetAside.behind(
                self.consumer, aggregate_id, env.version, env.type, still[aggregate_id]
            )
            log_set_aside(await record(conn, [entry]))
        return False

    async def gave_up(self, msg: Message, err: BaseException) -> None:
        """The message's last delivery failed (the service's own park ran already)."""
        if not self.hold or retry_will_fix(err):
            return
        env = ReceivedEnvelope.model_validate_json(msg.data)
        aggregate_id = UUID(env.aggregate_id)
        async with self.pool.acquire() as conn, conn.transaction():
            since = (await stopped_at(conn, self.consumer, [aggregate_id])).get(aggregate_id)
            if since is not None and since <= env.version:  # failed behind an earlier one
                entry = SetAside.behind(self.consumer, aggregate_id, env.version, env.type, since)
            else:
                entry = SetAside.failed(self.consumer, aggregate_id, env.version, env.type, err)
                if since is not None:  # a later message gave up first: it waits behind this
                    await conn.execute(
                        "UPDATE quarantine SET held = true, "
                        "error = 'held: quarantined since version ' || $3 "
                        "WHERE consumer = $1 AND aggregate_id = $2 AND version > $3",
                        self.consumer,
                        aggregate_id,
                        env.version,
                    )
                self._stopped[aggregate_id] = env.version
            log_set_aside(await record(conn, [entry]))


class Stopped:
    """A projection's quarantined aggregates (→ the version that failed), kept between
    batches and re-read whenever someone else (a replay's swap) wrote its tracking row."""

    def __init__(self) -> None:
        self.versions: dict[UUID, int] = {}
        self.stamp: datetime | None = None  # tracking.updated_at as this process wrote it

    def written_by_us(self, stamp: datetime | None) -> bool:
        """Whether the tracking row is as this process left it (``stamp`` is its
        ``updated_at`` now): nobody else (a replay's swap, another projector) wrote since."""
        return self.stamp is not None and stamp == self.stamp

    async def refresh(
        self, conn: asyncpg.Connection, consumer: str, stamp: datetime | None
    ) -> Mapping[UUID, int]:
        if not self.written_by_us(stamp):
            self.versions = await stopped_at(conn, consumer)
            self.stamp = None
        return self.versions
