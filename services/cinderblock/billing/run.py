"""The billing consumer: a durable JetStream pull consumer of volume and snapshot events
that keeps the usage ledger and publishes Cinder-compatible notifications.

Volume and snapshot events arrive in stream order (one worker) and each is one step of its
aggregate's fold kept in memory (``VolumeCursor``: a volume's or a snapshot's), decoded from
the envelope, which carries the event's fields: no read. A message that does not follow the
kept fold (a gap, an older one redelivered, a fresh process) folds the aggregate's stored
events instead, so it fills the gap and a redelivered one changes nothing. A batch's ledger
changes are written in one transaction before its messages are acked
(``usage.store.apply_changes``: idempotent by each aggregate's applied version). Then the
events' notifications are published with ``Nats-Msg-Id`` = their ``message_id`` (a
redelivery republishes the same ids, which JetStream drops within the duplicate window),
and optionally sent through oslo.messaging.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import nats.errors
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
from cinderblock.domain.snapshot import Snapshot
from cinderblock.readmodels.quarantine import (
    ConsumerQuarantine,
    describe,
    park,
    retry_will_fix,
)
from cinderblock.runtime.infra import alive, database
from cinderblock.runtime.outage import database_unavailable
from cinderblock.runtime.streams import stream_spec
from cinderblock.usage.consumer import billing_durable
from cinderblock.usage.cursor import VolumeCursor
from cinderblock.usage.notifications import Notification, wants_notification
from cinderblock.usage.store import (
    Change,
    EventReader,
    LedgerChanges,
    StepChange,
    apply_changes,
    refold,
)
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)

CURSORS = 10_000  # volumes and snapshots whose events and fold are kept in memory
BILLED_AGGREGATES = ("volume", "snapshot")


# Notifications JetStream refused, with why.
Refused = list[tuple[OutMessage, UnpublishableError]]


def notification_stream(settings: Settings) -> StreamSpec:
    """Notifications get a stream of their own (``<stream>_NOTIFICATIONS``): a deployer's
    bridge consumes it with its own retention, apart from the domain events."""
    return StreamSpec(
        name=f"{settings.stream}_NOTIFICATIONS",
        subjects=[settings.subject("notifications.>")],
        replicas=settings.stream_replicas,
    )


def consumer_spec(settings: Settings) -> ConsumerSpec:
    return ConsumerSpec(
        stream=settings.stream,
        durable=billing_durable(settings),
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
        # Outside a batch, steps that changed only a volume's version, until its next write.
        self._carried: dict[UUID, list[Change]] = {}
        self._locks: dict[UUID, asyncio.Lock] = {}
        self.host = socket.gethostname()
        self.spec = consumer_spec(settings)
        # A volume whose events the fold cannot take is quarantined; its later messages are
        # held (each would fail the same way, for max_deliver deliveries each).
        self.gate = ConsumerQuarantine(pool, self.spec.durable, hold=True)
        # During a batch (``before`` to ``after``): its ledger changes, its notifications
        # and the messages handled, by aggregate (volume or snapshot), and the envelopes
        # ``before`` decoded.
        self._batch: _Batch | None = None

    async def _emit(
        self, volume_id: UUID, notes: Sequence[Notification], meta: Mapping[str, Any]
    ) -> None:
        if self._batch is not None:
            self._batch.notes.append((volume_id, notes, meta))
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

    def _envelope(self, msg: Msg) -> ReceivedEnvelope:
        if self._batch is not None:
            env = self._batch.envelopes.get(id(msg))
            if env is not None:
                return env
        return ReceivedEnvelope.model_validate_json(msg.data)

    async def handle(self, msg: Msg) -> None:
        env = self._envelope(msg)
        if env.aggregate not in BILLED_AGGREGATES:
            return  # a server before NATS 2.10 ignores filter_subjects and sends everything
        aggregate_id = UUID(env.aggregate_id)
        async with self._lock(aggregate_id):
            notes = await self._aggregate_event(aggregate_id, env)
        if self._batch is not None:
            self._batch.msgs.setdefault(aggregate_id, []).append(msg)
        await self._emit(aggregate_id, notes, env.meta)

    async def before(self, msgs: list[Msg]) -> None:
        """A batch begins: its ledger changes and notifications are held until ``after``.
        A volume whose kept fold is right behind the batch's first event of it steps on from
        the envelopes alone; the others' events are read from the store, in one query."""
        batch = self._batch = _Batch()
        wanted: dict[UUID, int] = {}
        first: dict[UUID, int] = {}
        for msg in msgs:
            try:
                env = ReceivedEnvelope.model_validate_json(msg.data)
            except ValueError:
                continue  # the gate parks it
            batch.envelopes[id(msg)] = env
            if env.aggregate in BILLED_AGGREGATES:
                vid = UUID(env.aggregate_id)
                wanted[vid] = max(wanted.get(vid, 0), env.version)
                first[vid] = min(first.get(vid, env.version), env.version)
        behind = {
            vid: upto for vid, upto in wanted.items() if first[vid] != self._cursor_version(vid) + 1
        }
        await self.reader.read_ahead(self.pool, behind)

    async def after(self) -> None:
        """The batch's ledger changes in one transaction, then its notifications,
        pipelined, before its messages are acked. A write that fails for a reason no retry
        fixes is made again volume by volume: the volumes that fail then have their messages
        retried (or given up and quarantined, on their last delivery) on their own, and
        their notifications wait with them; the others' changes land."""
        batch, self._batch = self._batch, None
        if batch is None:
            return
        failed = await self._write(batch.ledger)
        for volume_id, err in failed.items():
            self._forget(volume_id)
            for msg in batch.msgs.get(volume_id, []):
                await self._retry_or_give_up(msg, volume_id, err)
        notes = [(n, meta) for vid, n, meta in batch.notes if vid not in failed]
        if notes:
            await self._keep_refused(await self.publisher.publish_many(notes))

    async def _write(self, ledger: LedgerChanges) -> dict[UUID, BaseException]:
        """Write ``ledger`` (one transaction); on a failure no retry fixes, volume by volume.
        Returns the volumes whose changes could not be written. A failure of the moment
        raises (the batch is redelivered: the write is idempotent)."""
        if not len(ledger):
            return {}
        try:
            async with self.pool.acquire() as conn:
                await apply_changes(conn, ledger, self.reader)
            return {}
        except Exception as err:
            if retry_will_fix(err):
                self._forget(*ledger.volumes())
                raise
            log.warning(
                "billing batch write failed, writing volume by volume",
                extra={"consumer": self.spec.durable, "error": describe(err)},
            )
        failed: dict[UUID, BaseException] = {}
        for vid in ledger.volumes():
            try:
                async with self.pool.acquire() as conn:
                    await apply_changes(conn, ledger.only([vid]), self.reader)
            except Exception as err:
                if retry_will_fix(err):
                    self._forget(*ledger.volumes())
                    raise
                failed[vid] = err
        return failed

    async def _retry_or_give_up(self, msg: Msg, volume_id: UUID, err: BaseException) -> None:
        """What ``run_consumer`` does with a message whose handler raised: nak with a delay,
        or on its last delivery park it and tell the gate (which quarantines its volume).
        The consumer's ack of it afterwards then finds it settled (and logs so)."""
        reason = describe(err)
        deliveries = msg.metadata.num_delivered
        extra = {
            "consumer": self.spec.durable,
            "subject": msg.subject,
            "volume_id": str(volume_id),
            "error": reason,
        }
        try:
            if deliveries >= self.spec.max_deliver:
                log.error("parking message after %s deliveries", deliveries, extra=extra)
                try:
                    await self.park(msg, reason)
                    await self.gate.gave_up(msg, err)
                except Exception as record_err:  # as the consumer loop: no message stops it
                    extra["payload"] = msg.data[:2000].decode(errors="replace")
                    extra["record_error"] = describe(record_err)
                    log.error("could not park a message given up; dropping it", extra=extra)
                await msg.term()
            else:
                log.warning("billing could not write a volume's ledger, redelivering", extra=extra)
                await msg.nak(delay=min(2.0**deliveries * 0.1, 5))
        except nats.errors.Error as nats_err:  # the server redelivers after the ack wait
            log.warning("could not settle a message: %s", nats_err)

    async def _record(self, volume_id: UUID, change: Change) -> None:
        """A ledger change: kept for the batch's write, or written now outside a batch. An
        event that changes nothing but the version is carried, outside a batch, to the
        volume's next write (a transaction of its own would cost more than the change);
        until then the volume's applied version is behind, which only makes a redelivery
        of it refold the volume."""
        carried = self._carried.pop(volume_id, [])
        if self._batch is not None:
            for c in (*carried, change):
                self._batch.ledger.add(volume_id, c)
            return
        if isinstance(change, StepChange) and change.closed is None and change.opened is None:
            self._carried[volume_id] = [*carried, change]
            return
        ledger = LedgerChanges()
        for c in (*carried, change):
            ledger.add(volume_id, c)
        try:
            async with self.pool.acquire() as conn:
                await apply_changes(conn, ledger, self.reader)
        except Exception:
            self._forget(volume_id)
            raise

    def _cursor_version(self, volume_id: UUID) -> int:
        cursor = self._cursors.get(volume_id)
        return 0 if cursor is None else cursor.version

    def _forget(self, *volume_ids: UUID) -> None:
        """Drop kept folds that may be ahead of the ledger (their next event refolds)."""
        for vid in volume_ids:
            self._cursors.pop(vid, None)
            self._carried.pop(vid, None)

    async def _aggregate_event(self, volume_id: UUID, env: ReceivedEnvelope) -> list[Notification]:
        """The next event of a volume or snapshot whose fold is kept (the usual case, and
        its first event) is one step of it, decoded from the envelope: no read. Anything
        else (a gap, an older event redelivered, a fresh process, an envelope this code
        cannot decode or that the step refuses) folds its whole story from the store, as
        replay's ledger does; the store's events decide whether the event is poison."""
        version = env.version
        cursor = self._cursors.get(volume_id)
        if cursor is None and version == 1:
            cursor = VolumeCursor(str(volume_id))
        if cursor is not None and cursor.version == version - 1:
            event = self.reader.from_envelope(env)
            if event is not None:
                try:
                    zone = await self._legacy_zone(cursor.volume, event)
                    step = cursor.step(event, default_host=self.host, default_zone=zone)
                except Exception as err:  # the store's copy of the event decides
                    if retry_will_fix(err):
                        raise
                    self._forget(volume_id)
                    log.info(
                        "billing step from the envelope failed, folding from the store",
                        extra={"volume_id": str(volume_id), "version": version, "error": str(err)},
                    )
                else:
                    self._keep(volume_id, cursor)
                    await self._record(volume_id, StepChange(version, step.closed, step.opened))
                    return step.notifications
        events = await self.reader.events_of(self.pool, volume_id, version)
        if not events or events[-1].originator_version != version:
            raise LookupError(f"{env.aggregate} {volume_id} v{version} not in the store")
        change = refold(volume_id, version, events)  # raises on an event the fold cannot take
        before = VolumeCursor.of_events(str(volume_id), events[:-1])
        zone = await self._legacy_zone(before.volume, events[-1])
        notes = before.step(events[-1], default_host=self.host, default_zone=zone).notifications
        kept = self._cursors.get(volume_id)
        if kept is None or kept.version < version:
            self._keep(volume_id, before)
        await self._record(volume_id, change)
        return notes

    async def _legacy_zone(self, aggregate: Any, event: Any) -> str | None:
        """The zone of a snapshot stored before snapshots kept their volume's (its volume's
        ``Created`` event, read when a notification needs it); None otherwise."""
        if not isinstance(event, Snapshot.Event) or not wants_notification(event):
            return None
        volume_id = getattr(aggregate, "volume_id", None) or getattr(event, "volume_id", None)
        zone = getattr(aggregate, "availability_zone", None) or getattr(
            event, "availability_zone", None
        )
        if zone is not None or volume_id is None:
            return None
        return await self.zone_of(volume_id)

    def _keep(self, volume_id: UUID, cursor: VolumeCursor) -> None:
        self._cursors[volume_id] = cursor
        self._cursors.move_to_end(volume_id)
        while len(self._cursors) > CURSORS:
            self._carried.pop(self._cursors.popitem(last=False)[0], None)

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


@dataclass
class _Batch:
    """What a batch collects between ``before`` and ``after``."""

    ledger: LedgerChanges = field(default_factory=LedgerChanges)
    notes: list[tuple[UUID | None, Sequence[Notification], Mapping[str, Any]]] = field(
        default_factory=list
    )
    msgs: dict[UUID, list[Msg]] = field(default_factory=dict)
    envelopes: dict[int, ReceivedEnvelope] = field(default_factory=dict)


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
            # Not derived_only: billing acks each message once its ledger change is
            # committed, and that ack ends the message's redelivery. A commit that did not
            # wait for the WAL flush can vanish in a PostgreSQL crash after the ack (the
            # chaos suite's PostgreSQL kill found a volume's last events lost that way).
            database(settings, max_size=6) as pool,
            connect(settings.nats_url, "billing") as nc,
        ):
            js = nc.jetstream()
            await ensure_stream(js, stream_spec(settings))
            await ensure_stream(js, notification_stream(settings))
            billing = Billing(settings, pool, Publisher(settings, js, oslo))
            with alive("billing"):
                await run_consumer(
                    js,
                    billing.spec,
                    billing.handle,
                    billing.park,
                    stop,
                    billing,
                    billing.gate,
                    outage=database_unavailable,
                )
    finally:
        if oslo is not None:
            oslo.close()
