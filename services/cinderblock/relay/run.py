"""The relay: follows the event log and publishes every event once to JetStream.

Position is recorded only after every PubAck of a batch; a crash in between republishes the
batch and ``Nats-Msg-Id`` de-duplication drops the copies. One active relay per stream
(session advisory lock); a second instance waits as a hot standby.

No event stops it: one it cannot turn into a message (undecodable) or that JetStream will
never take (too large) is quarantined (``cinderblock.readmodels.quarantine``) with its
aggregate's later events, so consumers never see a hole in an aggregate's versions; the
rest is published and the position moves on. A relay that starts (a fixed version, say)
first tries what it set aside again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

import asyncpg
from nats.js import JetStreamContext

from cinderblock.bus.connection import connect
from cinderblock.bus.jetstream import OutMessage, UnpublishableError, ensure_stream, publish_all
from cinderblock.config.settings import Settings
from cinderblock.readmodels.quarantine import (
    SetAside,
    describe,
    log_set_aside,
    record,
    retry_will_fix,
    stopped_at,
)
from cinderblock.readmodels.queries import projected_position
from cinderblock.runtime.infra import alive, database
from cinderblock.runtime.leadership import lead
from cinderblock.runtime.streams import stream_spec
from cinderblock.store.eventstore import AsyncEventStore, Position, RecordedEvent
from cinderblock.store.mapping import event_data, event_name
from cinderblock.store.tail import LogTail
from cinderblock.wire.envelope import EventEnvelope, event_type

log = logging.getLogger(__name__)

AfterPublish = Callable[[Sequence[RecordedEvent]], Awaitable[None]]


def tracking_name(settings: Settings) -> str:
    return f"relay:{settings.stream}"


class Relay:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        *,
        after_publish: AfterPublish | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.js = js
        self.store = AsyncEventStore(pool)
        self.after_publish = after_publish
        self.published = 0
        self.stopped: dict[UUID, int] = {}  # quarantined aggregate → version that failed

    def message(self, record: RecordedEvent) -> OutMessage:
        domain_event = self.store.decode(record)
        name = event_name(record.topic)
        aggregate = event_type(name).partition(".")[0]
        msg_id = f"{record.originator_id}:{record.originator_version}"
        envelope = EventEnvelope(
            id=msg_id,
            type=event_type(name),
            aggregate=aggregate,
            aggregate_id=str(record.originator_id),
            version=record.originator_version,
            position=record.position,
            occurred_at=domain_event.timestamp,
            request_id=record.meta.get("request_id"),
            meta=record.meta,
            data=event_data(domain_event),
        )
        subject = self.settings.subject(
            f"{aggregate}.events.{name.partition('.')[2]}.{record.originator_id}"
        )
        return OutMessage(subject, envelope.model_dump_json().encode(), msg_id)

    async def publish(self, batch: Sequence[RecordedEvent]) -> list[SetAside]:
        """Publish the batch pipelined; returns what was set aside. Only when it fails for a
        reason no retry fixes is it published again one event at a time, to find which."""
        name = tracking_name(self.settings)
        aside, ready = [], []
        for r in batch:
            first = self.stopped.get(r.originator_id)
            if first is not None and r.originator_version >= first:
                aside.append(self._behind(r, first))
            else:
                ready.append(r)
        try:
            messages = [self.message(r) for r in ready]
        except Exception as err:
            if retry_will_fix(err):
                raise
        else:
            try:
                duplicates = await publish_all(self.js, messages)
            except UnpublishableError as err:
                log.warning("relay batch refused, publishing it event by event: %s", err)
            else:
                self._count(len(ready), duplicates)
                return aside
        log.warning("relay batch failed, publishing it event by event", extra={"stream": name})
        for r in ready:
            first = self.stopped.get(r.originator_id)
            if first is not None and r.originator_version >= first:
                aside.append(self._behind(r, first))
                continue
            error = await self._publish_one(r)
            if error is not None:
                self.stopped[r.originator_id] = r.originator_version
                at = (r.tx_id, r.position)
                aside.append(
                    SetAside.failed(
                        name,
                        r.originator_id,
                        r.originator_version,
                        event_name(r.topic),
                        error,
                        at=at,
                    )
                )
        return aside

    async def _publish_one(self, r: RecordedEvent) -> BaseException | None:
        """Publish one event; the error when it never can be, None when it was."""
        try:
            message = self.message(r)
        except Exception as err:
            if retry_will_fix(err):
                raise
            return err
        try:
            self._count(1, await publish_all(self.js, [message]))
        except UnpublishableError as err:
            return err
        return None

    def _count(self, sent: int, duplicates: int) -> None:
        self.published += sent - duplicates
        if duplicates:
            log.info("relay republished %d known events", duplicates)

    def _behind(self, r: RecordedEvent, first: int) -> SetAside:
        return SetAside.behind(
            tracking_name(self.settings),
            r.originator_id,
            r.originator_version,
            event_name(r.topic),
            first,
            at=(r.tx_id, r.position),
        )

    async def record(self, at: Position, aside: Sequence[SetAside] = ()) -> None:
        """The position, and what was set aside on the way, in one transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            recorded = await record(conn, aside)
            await conn.execute(
                """
                INSERT INTO tracking (name, tx_id, position, updated_at)
                VALUES ($1, $2, $3, now())
                ON CONFLICT (name) DO UPDATE SET tx_id = $2, position = $3, updated_at = now()
                """,
                tracking_name(self.settings),
                at.tx_id,
                at.position,
            )
        log_set_aside(recorded)

    async def retry_set_aside(self) -> None:
        """What this relay set aside, tried again in each aggregate's order: events that
        now publish leave the quarantine; the first that still fails becomes the one the
        aggregate waits behind. Then the quarantined aggregates are known for the tail."""
        name = tracking_name(self.settings)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_SET_ASIDE, name)
            waiting: dict[UUID, list[RecordedEvent]] = {}
            for r in rows:
                waiting.setdefault(r["originator_id"], []).append(_recorded(r))
            for aggregate_id, events in waiting.items():
                await self._retry(conn, name, aggregate_id, events)
            self.stopped = await stopped_at(conn, name)

    async def _retry(
        self, conn: asyncpg.Connection, name: str, aggregate_id: UUID, events: list[RecordedEvent]
    ) -> None:
        published: list[int] = []
        for r in events:
            error = await self._publish_one(r)
            if error is not None:
                await conn.execute(
                    "UPDATE quarantine SET held = version > $3, error = CASE WHEN version = $3 "
                    "THEN $4 ELSE 'held: quarantined since version ' || $3 END "
                    "WHERE consumer = $1 AND aggregate_id = $2",
                    name,
                    aggregate_id,
                    r.originator_version,
                    describe(error),
                )
                break
            published.append(r.originator_version)
        await conn.execute(
            "DELETE FROM quarantine WHERE consumer = $1 AND aggregate_id = $2 "
            "AND version = ANY($3::int[])",
            name,
            aggregate_id,
            published,
        )
        if published:
            log.info(
                "relay published events it had set aside",
                extra={"aggregate_id": str(aggregate_id), "versions": published},
            )

    async def position(self) -> Position:
        async with self.pool.acquire() as conn:
            return Position(*await projected_position(conn, tracking_name(self.settings)))

    async def follow(self, stop: asyncio.Event) -> None:
        """Publish until ``stop``; on a failure of the moment start over from the tracked
        position after a back-off (re-publishing is harmless: Nats-Msg-Id de-duplicates)."""
        delay = 0.5
        while not stop.is_set():
            try:
                await self.retry_set_aside()
                async for batch in LogTail(self.pool).batches(await self.position(), stop):
                    aside = await self.publish(batch)
                    if self.after_publish is not None:
                        await self.after_publish(batch)
                    await self.record(batch[-1].at, aside)
                    delay = 0.5
            except (TimeoutError, OSError) as err:
                log.warning("relay publish failed, retrying from tracked position: %s", err)
            except Exception:
                log.exception(
                    "relay failed; retrying in %.1fs", delay, extra={"stream": self.settings.stream}
                )
                delay = min(delay * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


_SET_ASIDE = """
SELECT e.position, e.tx_id::text::bigint AS tx_id, e.originator_id, e.originator_version,
       e.topic, e.state, e.meta::text AS meta, e.recorded_at
FROM quarantine q
JOIN events e ON e.originator_id = q.aggregate_id AND e.originator_version = q.version
WHERE q.consumer = $1
ORDER BY e.originator_id, e.originator_version
"""


def _recorded(r: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=r["position"],
        tx_id=r["tx_id"],
        originator_id=r["originator_id"],
        originator_version=r["originator_version"],
        topic=r["topic"],
        state=r["state"],
        meta=json.loads(r["meta"]),
        recorded_at=r["recorded_at"],
    )


async def run(
    settings: Settings, *, stop: asyncio.Event, after_publish: AfterPublish | None = None
) -> None:
    settings.require_servers()
    async with (
        database(settings, max_size=4, derived_only=True) as pool,
        connect(settings.nats_url, "relay") as nc,
    ):
        js = nc.jetstream()
        await ensure_stream(js, stream_spec(settings))

        async def work(until: asyncio.Event) -> None:
            log.info("relay active", extra={"stream": settings.stream})
            await Relay(settings, pool, js, after_publish=after_publish).follow(until)

        with alive("relay"):
            await lead(pool, tracking_name(settings), stop, work)
