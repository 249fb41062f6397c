"""The relay: follows the event log and publishes every event once to JetStream.

Position is recorded only after every PubAck of a batch; a crash in between republishes the
batch and ``Nats-Msg-Id`` de-duplication drops the copies. One active relay per stream
(session advisory lock); a second instance waits as a hot standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from nats.js import JetStreamContext

from cinderblock.bus.connection import connect
from cinderblock.bus.jetstream import OutMessage, ensure_stream, publish_all
from cinderblock.config.settings import Settings
from cinderblock.readmodels.queries import projected_position
from cinderblock.runtime.infra import alive, database
from cinderblock.runtime.leadership import leadership
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

    async def publish(self, batch: Sequence[RecordedEvent]) -> None:
        duplicates = await publish_all(self.js, [self.message(r) for r in batch])
        self.published += len(batch) - duplicates
        if duplicates:
            log.info("relay republished %d known events", duplicates)

    async def record(self, at: Position) -> None:
        await self.pool.execute(
            """
            INSERT INTO tracking (name, tx_id, position, updated_at) VALUES ($1, $2, $3, now())
            ON CONFLICT (name) DO UPDATE SET tx_id = $2, position = $3, updated_at = now()
            """,
            tracking_name(self.settings),
            at.tx_id,
            at.position,
        )

    async def position(self) -> Position:
        async with self.pool.acquire() as conn:
            return Position(*await projected_position(conn, tracking_name(self.settings)))

    async def follow(self, stop: asyncio.Event) -> None:
        """Publish until ``stop``; on any failure start over from the tracked position after
        a back-off (re-publishing is harmless: Nats-Msg-Id de-duplicates)."""
        delay = 0.5
        while not stop.is_set():
            try:
                async for batch in LogTail(self.pool).batches(await self.position(), stop):
                    await self.publish(batch)
                    if self.after_publish is not None:
                        await self.after_publish(batch)
                    await self.record(batch[-1].at)
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
        with alive("relay"):
            async with leadership(pool, tracking_name(settings), stop) as leader:
                if leader:
                    log.info("relay active", extra={"stream": settings.stream})
                    await Relay(settings, pool, js, after_publish=after_publish).follow(stop)
