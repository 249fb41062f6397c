"""The billing consumer: a durable JetStream pull consumer of volume and snapshot events
that keeps the usage ledger and publishes Cinder-compatible notifications.

Each message is a trigger: the volume's events up to the message's version are read from
the event store and folded (so a message that overtakes an earlier one fills the gap, and a
redelivered one changes nothing); then the event's notifications are published with
``Nats-Msg-Id`` = their ``message_id`` (a redelivery republishes the same ids, which
JetStream drops within the duplicate window), and optionally sent through oslo.messaging.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from cinderblock.bus.connection import connect
from cinderblock.bus.jetstream import (
    ConsumerSpec,
    OutMessage,
    StreamSpec,
    UnpublishableError,
    ensure_stream,
    publish_all,
    run_consumer,
)
from cinderblock.config.settings import Settings
from cinderblock.readmodels.quarantine import ConsumerQuarantine, describe, park
from cinderblock.runtime.infra import alive, database
from cinderblock.runtime.streams import stream_spec
from cinderblock.usage.cursor import VolumeCursor
from cinderblock.usage.notifications import (
    Notification,
    snapshot_notifications,
    volume_notifications,
)
from cinderblock.usage.store import EventReader, apply_step, apply_volume
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)

DURABLE = "billing"
CURSORS = 10_000  # volumes whose events and fold are kept in memory
BILLED_AGGREGATES = ("volume", "snapshot")


# Notifications JetStream refused, with why.
Refused = list[tuple[OutMessage, UnpublishableError]]


def notification_stream(settings: Settings) -> StreamSpec:
    """Notifications get a stream of their own (``<stream>_NOTIFICATIONS``): a deployer's
    bridge consumes it with its own retention, apart from the domain events."""
    return StreamSpec(
        name=f"{settings.stream}_NOTIFICATIONS",
        subjects=[settings.subject("notifications.>")],
    )


def consumer_spec(settings: Settings) -> ConsumerSpec:
    return ConsumerSpec(
        stream=settings.stream,
        durable=f"{settings.subject_prefix.replace('.', '-')}{DURABLE}",
        filter_subjects=[settings.subject(f"{a}.events.>") for a in BILLED_AGGREGATES],
        ack_wait=30.0,
        max_deliver=20,
        # One worker taking what is there: events reach the kept folds in stream order
        # (each a single step); several workers would interleave a volume's events.
        workers=1,
        batch=128,
    )


class Publisher:
    """Notifications on ``{prefix}notifications.<priority>.<event_type>``, plus oslo."""

    def __init__(self, settings: Settings, js: JetStreamContext, oslo: Any = None) -> None:
        self.settings = settings
        self.js = js
        self.oslo = oslo

    async def publish(self, notes: Sequence[Notification], meta: Mapping[str, Any]) -> Refused:
        return await self.publish_many([(notes, meta)])

    async def publish_many(
        self, groups: Sequence[tuple[Sequence[Notification], Mapping[str, Any]]]
    ) -> Refused:
        """Every group's notifications pipelined (one wait for all PubAcks), then oslo.
        Returns those JetStream will never take (too large): the others are published all
        the same, so one notification cannot hold back a batch."""
        out = [
            OutMessage(
                self.settings.subject(n.subject_tail),
                json.dumps(n.message()).encode(),
                n.message_id,
            )
            for notes, _ in groups
            for n in notes
        ]
        refused: Refused = []
        while out:
            try:
                await publish_all(self.js, out)
                break
            except UnpublishableError as err:  # those before it went out (de-duplicated)
                if not any(m.msg_id == err.msg_id for m in out):
                    raise
                refused += [(m, err) for m in out if m.msg_id == err.msg_id]
                out = [m for m in out if m.msg_id != err.msg_id]
        if self.oslo is not None:
            for notes, meta in groups:
                if notes:
                    await self.oslo.send(notes, meta)
        return refused


class Billing:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, publisher: Publisher) -> None:
        self.settings = settings
        self.pool = pool
        self.publisher = publisher
        self.reader = EventReader(cache_size=CURSORS)
        self._cursors: OrderedDict[UUID, VolumeCursor] = OrderedDict()
        self._locks: dict[UUID, asyncio.Lock] = {}
        self.host = socket.gethostname()
        self.spec = consumer_spec(settings)
        # A volume whose events the fold cannot take is quarantined; its later messages are
        # held (each would fail the same way, for max_deliver deliveries each).
        self.gate = ConsumerQuarantine(pool, self.spec.durable, hold=True)
        # During a batch, notifications wait here and go out together before the acks.
        self._deferred: list[tuple[Sequence[Notification], Mapping[str, Any]]] | None = None

    async def _emit(self, notes: Sequence[Notification], meta: Mapping[str, Any]) -> None:
        if self._deferred is not None:
            self._deferred.append((notes, meta))
        else:
            await self._keep_refused(await self.publisher.publish(notes, meta))

    async def _keep_refused(self, refused: Refused) -> None:
        for message, err in refused:
            log.error(
                "notification refused by JetStream, kept in dead_letters",
                extra={"consumer": self.spec.durable, "msg_id": message.msg_id, "error": str(err)},
            )
            await park(
                self.pool,
                self.spec.durable,
                message.subject,
                message.payload,
                describe(err),
                msg_id=message.msg_id,
            )

    async def handle(self, msg: Msg) -> None:
        env = ReceivedEnvelope.model_validate_json(msg.data)
        if env.aggregate not in BILLED_AGGREGATES:
            return  # a server before NATS 2.10 ignores filter_subjects and sends everything
        aggregate_id = UUID(env.aggregate_id)
        if env.aggregate == "volume":
            async with self._lock(aggregate_id):
                notes = await self._volume_event(aggregate_id, env.version)
            await self._emit(notes, env.meta)
            return
        events = await self._events(aggregate_id, env)
        notes = snapshot_notifications(
            events,
            env.version,
            availability_zone=await self.zone_of(events[0].volume_id),
            host=self.host,
        )
        await self._emit(notes, env.meta)

    async def before(self, msgs: list[Msg]) -> None:
        """A batch begins: its notifications are held until ``after``; each volume's new
        events are read in one query (the handler then finds them in the reader's cache)."""
        self._deferred = []
        newest: dict[UUID, int] = {}
        for msg in msgs:
            env = ReceivedEnvelope.model_validate_json(msg.data)
            if env.aggregate == "volume":
                vid = UUID(env.aggregate_id)
                newest[vid] = max(newest.get(vid, 0), env.version)
        for vid, version in newest.items():
            await self.reader.events_of(self.pool, vid, version)

    async def after(self) -> None:
        """The batch's notifications, pipelined, before its messages are acked."""
        deferred, self._deferred = self._deferred, None
        if deferred:
            await self._keep_refused(await self.publisher.publish_many(deferred))

    async def _events(self, aggregate_id: UUID, env: ReceivedEnvelope) -> list[Any]:
        events = await self.reader.events_of(self.pool, aggregate_id, env.version)
        if not events or events[-1].originator_version != env.version:
            raise LookupError(f"{env.aggregate} {aggregate_id} v{env.version} not in the store")
        return events

    async def _volume_event(self, volume_id: UUID, version: int) -> list[Notification]:
        """The next event of a volume whose fold is kept (the usual case) costs one step and
        at most one small transaction; anything else (a gap, an older event redelivered, a
        fresh process) folds the volume's whole story, as ``rebuild_ledger`` does."""
        events = await self.reader.events_of(self.pool, volume_id, version)
        if not events or events[-1].originator_version != version:
            raise LookupError(f"volume {volume_id} v{version} not in the store")
        cursor = self._cursors.get(volume_id)
        if cursor is not None and cursor.version == version - 1:
            step = cursor.step(events[-1], default_host=self.host)
            self._cursors.move_to_end(volume_id)
            if step.ledger_changed:
                async with self.pool.acquire() as conn:
                    await apply_step(conn, volume_id, version, step.closed, step.opened)
            return step.notifications
        async with self.pool.acquire() as conn:
            await apply_volume(conn, volume_id, version, events)
        if cursor is None or cursor.version < version:
            self._cursors[volume_id] = VolumeCursor.of_events(str(volume_id), events)
            while len(self._cursors) > CURSORS:
                self._cursors.popitem(last=False)
        return volume_notifications(events, version, default_host=self.host)

    def _lock(self, volume_id: UUID) -> asyncio.Lock:
        lock = self._locks.get(volume_id)
        if lock is None:
            if len(self._locks) > CURSORS:
                for key in [k for k, v in self._locks.items() if not v.locked()]:
                    del self._locks[key]
            lock = self._locks[volume_id] = asyncio.Lock()
        return lock

    async def zone_of(self, volume_id: str) -> str:
        created = await self.reader.events_of(self.pool, UUID(volume_id), 1)
        if created:
            return str(created[0].availability_zone)
        return self.settings.default_availability_zone

    async def park(self, msg: Msg, error: str) -> None:
        env = ReceivedEnvelope.model_validate_json(msg.data)  # the gate parks undecodable ones
        log.error(
            "billing gave up on an event",
            extra={"volume_id": env.aggregate_id, "version": env.version, "error": error},
        )
        await park(
            self.pool,
            self.spec.durable,
            msg.subject,
            msg.data,
            error,
            msg_id=env.id,
            deliveries=msg.metadata.num_delivered,
        )


def build_oslo(settings: Settings) -> Any:
    if not settings.notification_transport_url:
        return None
    from cinderblock.billing.oslo import OsloNotifier

    log.info("oslo.messaging notifications on", extra={"exchange": settings.notification_exchange})
    return OsloNotifier(
        settings.notification_transport_url,
        topics=[t.strip() for t in settings.notification_topics.split(",") if t.strip()],
        exchange=settings.notification_exchange,
    )


async def run(settings: Settings, *, stop: asyncio.Event) -> None:
    settings.require_servers()
    oslo = build_oslo(settings)
    try:
        async with (
            database(settings, max_size=6, derived_only=True) as pool,
            connect(settings.nats_url, "billing") as nc,
        ):
            js = nc.jetstream()
            await ensure_stream(js, stream_spec(settings))
            await ensure_stream(js, notification_stream(settings))
            billing = Billing(settings, pool, Publisher(settings, js, oslo))
            with alive("billing"):
                await run_consumer(
                    js, billing.spec, billing.handle, billing.park, stop, billing, billing.gate
                )
    finally:
        if oslo is not None:
            oslo.close()
