"""NATS JetStream mechanics: stream convergence, pipelined de-duplicated publishing, and a
durable pull-consumer loop with explicit ack, nak with delay, and dead-letter parking."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
    DeliverPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: list[str]
    duplicate_window: float = 600.0  # seconds
    # Copies of the stream (JetStream's num_replicas): 3 on a three-node cluster, 1 on a
    # single server. A stream with 3 keeps accepting publishes and deliveries when one node
    # dies (a new leader is elected among the other two).
    replicas: int = 1


async def ensure_stream(js: JetStreamContext, spec: StreamSpec) -> StreamInfo:
    """Create the stream, or bring an existing one to this configuration, and return it as
    the server now has it.

    JetStream changes an existing stream's subjects, duplicate window and replica count in
    place (in a cluster, a new replica is caught up from the others; a stream of 3 brought
    to 1 keeps its leader's copy), so a deployment moving to a cluster takes the new count
    at the next start; what changed is logged. A field the server would not change (the
    storage) raises."""
    config = StreamConfig(
        name=spec.name,
        subjects=spec.subjects,
        storage=StorageType.FILE,
        duplicate_window=spec.duplicate_window,
        num_replicas=spec.replicas,
    )
    extra = {"stream": spec.name}
    before: StreamConfig | None
    try:
        before = (await js.stream_info(spec.name)).config
    except nats.js.errors.NotFoundError:
        before = None
        try:
            info = await js.add_stream(config)
        except nats.js.errors.BadRequestError as err:  # made meanwhile by another process?
            try:
                before = (await js.stream_info(spec.name)).config
            except nats.js.errors.NotFoundError:
                raise err from None
    if before is not None:
        info = await js.update_stream(config)
        changed = [
            f"{name} {getattr(before, name)} -> {getattr(info.config, name)}"
            for name in ("num_replicas", "subjects", "duplicate_window")
            if getattr(before, name) != getattr(info.config, name)
        ]
        if changed:
            log.info("stream updated: %s", ", ".join(changed), extra=extra)
    now = info.config
    if (now.num_replicas or 1) != spec.replicas:
        log.warning(
            "stream kept %s replicas (asked: %s)", now.num_replicas, spec.replicas, extra=extra
        )
    return info


@dataclass(frozen=True)
class OutMessage:
    subject: str
    payload: bytes
    msg_id: str
    headers: dict[str, str] = field(default_factory=dict)


class UnpublishableError(Exception):
    """Raised by ``publish_all`` for a message JetStream will never take: larger than the
    server's maximum payload, or refused by the stream (a 4xx PubAck). Publishing it again
    fails the same way (``retry_will_fix`` tells ``cinderblock.readmodels.quarantine``)."""

    retry_will_fix = False

    def __init__(self, msg_id: str, reason: str) -> None:
        super().__init__(f"{msg_id}: {reason}")
        self.msg_id = msg_id


def _header_size(headers: dict[str, str]) -> int:
    """The encoded size of NATS headers (``NATS/1.0``, one ``k: v`` line each, a blank line),
    which counts toward the maximum payload."""
    return 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())


async def publish_all(
    js: JetStreamContext, messages: Sequence[OutMessage], *, timeout: float = 10.0
) -> int:
    """Publish pipelined and wait for every PubAck; returns how many were duplicates.

    Raises if any publish failed: the caller retries the whole batch, and ``Nats-Msg-Id``
    makes the retry harmless. ``UnpublishableError`` names a message that will never be
    taken (checked before sending, or refused by the stream); the messages before it were
    published.
    """
    connection = getattr(js, "_nc", None)  # nats-py keeps the server's limit there
    limit: int | None = getattr(connection, "max_payload", None)
    futures = []
    refused: UnpublishableError | None = None
    for m in messages:
        headers = {"Nats-Msg-Id": m.msg_id, **m.headers}
        size = len(m.payload) + _header_size(headers)
        if limit and size > limit:
            refused = UnpublishableError(m.msg_id, f"{size} bytes, the server takes {limit}")
            break
        try:
            futures.append(await js.publish_async(m.subject, m.payload, headers=headers))
        except nats.errors.MaxPayloadError as err:
            refused = UnpublishableError(m.msg_id, f"{size} bytes: {err}")
            break
    async with asyncio.timeout(timeout):
        acks = await asyncio.gather(*futures, return_exceptions=True)
    for m, ack in zip(messages, acks, strict=False):
        if isinstance(ack, nats.js.errors.APIError) and _refused(ack):
            raise UnpublishableError(m.msg_id, f"refused by the stream: {ack}") from ack
        if isinstance(ack, BaseException):
            raise ack
    if refused is not None:
        raise refused
    return sum(1 for ack in acks if getattr(ack, "duplicate", False))


def _refused(err: nats.js.errors.APIError) -> bool:
    """A 4xx PubAck (bad request, message too large for the stream…) refuses this message;
    a timeout (408), throttling (429) or an unavailable stream (503) is of the moment."""
    return err.code is not None and 400 <= err.code < 500 and err.code not in (408, 429)


class RetryLaterError(Exception):
    """Raised by a handler to have the message redelivered after ``delay`` seconds."""

    def __init__(self, reason: str, delay: float = 1.0) -> None:
        super().__init__(reason)
        self.delay = delay


Handler = Callable[[Msg], Awaitable[None]]
Park = Callable[[Msg, str], Awaitable[None]]
# Whether an error means a server the handler needs is away for now (the database: the
# caller passes ``cinderblock.runtime.outage.database_unavailable``; the bus knows no
# database). Such a failure is waited out with the message held, not counted as a delivery.
Outage = Callable[[BaseException], bool]


class DeliveriesLostError(Exception):
    """Given to ``park`` and the gate for a message none of whose deliveries was settled:
    its worker died (or lost the server) every time, before the ack or nak. The server
    allows one delivery more than ``ConsumerSpec.max_deliver`` for this: that one gives
    the message up without running its handler again, so a message that kills its worker
    still ends in a compensation instead of stopping silently at the server's limit."""

    retry_will_fix = False  # the same message would kill the next worker too


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    filter_subjects: list[str]
    # Seconds without an ack, a nak or a progress report before the server hands a message
    # to another worker. Workers report progress on the messages they hold every quarter of
    # it, so it bounds how long a crashed worker's messages wait, not how long a step runs.
    ack_wait: float = 5.0
    # Deliveries whose handler runs (its last failure gives the message up); the durable is
    # made with one more, for a message whose deliveries were all lost (DeliveriesLostError).
    max_deliver: int = 5
    max_ack_pending: int = 1000
    workers: int = 8
    # Only messages published after the durable was first created (a consumer turned on
    # late must not act on the whole history); the durable keeps its place afterwards.
    deliver_new: bool = False
    # Messages per pull. 1 for sagas (no step waits for others); a consumer that keeps
    # up with the whole stream (billing) takes what is there, up to ``batch``, per pull.
    batch: int = 1


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> ConsumerInfo:
    """Create the durable, or bring an existing one to this configuration, and return it as
    the server now has it.

    JetStream updates an existing durable's ack wait, max deliver, filter subjects and max
    ack pending in place (``add_consumer`` is create-or-update), so a durable made with an
    older ack wait takes the new one at the next start; what changed is logged. A field the
    server would not change (the deliver policy) raises, as before."""
    config = ConsumerConfig(
        durable_name=spec.durable,
        ack_policy=AckPolicy.EXPLICIT,
        filter_subjects=spec.filter_subjects,
        ack_wait=spec.ack_wait,
        max_deliver=spec.max_deliver + 1,
        max_ack_pending=spec.max_ack_pending,
    )
    if spec.deliver_new:
        config.deliver_policy = DeliverPolicy.NEW
    try:
        before: ConsumerConfig | None = (await js.consumer_info(spec.stream, spec.durable)).config
    except nats.js.errors.NotFoundError:
        before = None
    info = await js.add_consumer(spec.stream, config)
    now = info.config
    extra = {"consumer": spec.durable, "stream": spec.stream}
    if before is not None:
        changed = [
            f"{name} {getattr(before, name)} -> {getattr(now, name)}"
            for name in ("ack_wait", "max_deliver", "max_ack_pending")
            if getattr(before, name) != getattr(now, name)
        ]
        if changed:
            log.info("durable consumer updated: %s", ", ".join(changed), extra=extra)
    if now.ack_wait != spec.ack_wait or now.max_deliver != config.max_deliver:
        log.warning(
            "durable consumer kept ack_wait %s, max_deliver %s (asked: %s, %s)",
            now.ack_wait,
            now.max_deliver,
            spec.ack_wait,
            config.max_deliver,
            extra=extra,
        )
    return info


class Batching(Protocol):
    """What a consumer that takes batches may do around each one: ``before`` sees the batch
    (e.g. reads what its messages need in one query); ``after`` runs once every message of
    it was handled, before they are acked (e.g. publishes what they produced, pipelined).
    If ``after`` raises, the batch's handled messages are redelivered (handlers must be
    idempotent anyway)."""

    async def before(self, msgs: list[Msg]) -> None: ...

    async def after(self) -> None: ...


class Gate(Protocol):
    """Decides, around the handler, which messages a consumer sets aside
    (``cinderblock.readmodels.quarantine.ConsumerQuarantine``)."""

    async def admit(self, msg: Msg) -> bool:
        """False: the message was set aside (and recorded); it is acked unhandled."""
        ...

    async def gave_up(self, msg: Msg, err: BaseException) -> None:
        """The message's last delivery failed with ``err`` (``park`` ran first)."""
        ...


async def run_consumer(
    js: JetStreamContext,
    spec: ConsumerSpec,
    handler: Handler,
    park: Park,
    stop: asyncio.Event,
    batching: Batching | None = None,
    gate: Gate | None = None,
    outage: Outage | None = None,
) -> None:
    """Handle messages until ``stop`` with ``spec.workers`` pull subscriptions on the durable.

    Each message is acked after its handler returns, nak'ed with a delay when it raises, and
    parked then terminated on its last allowed delivery. Each worker pulls one message at a
    time: nats-py's batched fetch waits for a full batch once it lingers, which would add
    up to the fetch timeout to every saga step. With ``spec.batch`` > 1 a pull takes what is
    available (up to the batch) at once, handled one by one in stream order, with
    ``batching``'s hooks around each batch of more than one message. ``gate`` sees each
    message first and may set it aside, and hears of every message given up.

    While a worker holds messages (fetched, not yet settled) it reports them in progress
    every quarter of the ack wait: a step longer than the ack wait (a copy, an upload) is
    neither handed to a second worker nor counted as a failed delivery, while the messages
    of a worker that died come back after one ack wait. A message picked up again that this
    process did not nak (its worker died, or lost the server) is logged as resumed.

    No message stops a worker: parking that fails is retried a few times, then the message
    is logged and terminated; a failed ack or nak is logged (the server redelivers).

    A failure that ``outage`` calls an outage (the database away) is not a failed delivery:
    the worker keeps the messages it holds (in progress), tries again with a growing pause
    until it succeeds, fails otherwise or ``stop`` is set, and logs one line when the outage
    begins and one when it ends. A long outage then costs no deliveries, gives nothing up,
    and keeps each aggregate's messages in order.
    """
    info = await ensure_consumer(js, spec)
    # The shorter of the two, should the server have kept an older, shorter ack wait.
    ack_wait = min(spec.ack_wait, info.config.ack_wait or spec.ack_wait)
    consumer = _Consumer(
        spec,
        handler,
        park,
        batching,
        gate,
        progress_every=ack_wait / 4,
        gives_up_lost=True,
        outage=outage,
        stop=stop,
    )
    await asyncio.gather(*(consumer.work(js, stop) for _ in range(spec.workers)))


async def _handle_batch(
    msgs: list[Msg],
    spec: ConsumerSpec,
    handler: Handler,
    park: Park,
    batching: Batching,
    gate: Gate | None,
    outage: Outage | None = None,
) -> None:
    """One batch as a worker handles it, without progress reports (for tests that drive
    the loop's sequence with messages of their own)."""
    consumer = _Consumer(spec, handler, park, batching, gate, outage=outage)
    await consumer.batch(msgs, batching, _Progress(None))


class _Progress:
    """The messages one worker holds (fetched, not yet acked, nak'ed or terminated), each
    reported in progress (JetStream's ``+WPI``, which restarts its ack wait) every
    ``every`` seconds; ``None``: never."""

    def __init__(self, every: float | None) -> None:
        self.every = every
        self._held: dict[int, Msg] = {}  # by id(): nats-py's Msg is not hashable
        self._task: asyncio.Task[None] | None = None

    def hold(self, msgs: Sequence[Msg]) -> None:
        self._held.update((id(m), m) for m in msgs)
        if self._task is None and self.every is not None:
            self._task = asyncio.create_task(self._report(self.every))

    def release(self, msg: Msg) -> None:
        """Before the message is settled: a report after a nak would restart its ack wait,
        replacing the nak's delay."""
        self._held.pop(id(msg), None)

    def release_all(self) -> None:
        self._held.clear()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _report(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            for key, msg in list(self._held.items()):
                if key in self._held:  # not settled while an earlier report was sent
                    with contextlib.suppress(nats.errors.Error):
                        await msg.in_progress()


# Stream sequences this process nak'ed, so their redelivery is not logged as a resumption.
_NAKED_KEPT = 10_000
_LEADERLESS_PAUSE = 0.2  # seconds between pulls while the durable has no leader


@dataclass
class _Consumer:
    spec: ConsumerSpec
    handler: Handler
    park: Park
    batching: Batching | None = None
    gate: Gate | None = None
    progress_every: float | None = None
    # Set when the durable allows the extra delivery (run_consumer): a message delivered
    # more often than ``spec.max_deliver`` then had every delivery lost.
    gives_up_lost: bool = False
    outage: Outage | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    naked: dict[int, None] = field(default_factory=dict)

    async def work(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        """One worker: pull, handle, settle, until ``stop``."""
        spec = self.spec
        sub = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        progress = _Progress(self.progress_every)
        try:
            leaderless = False
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(spec.batch, timeout=0.5)
                except (nats.errors.TimeoutError, TimeoutError):
                    msgs = []  # answered, nothing there
                except nats.js.errors.ServiceUnavailableError:
                    # 503: nobody serves the durable now (its leader node died and a new one
                    # is being elected, or the cluster lost quorum): pull again shortly.
                    if not leaderless:
                        log.warning(
                            "durable consumer has no leader, pulling again",
                            extra={"consumer": spec.durable},
                        )
                    leaderless = True
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), _LEADERLESS_PAUSE)
                    continue
                if leaderless:
                    log.info("durable consumer answers again", extra={"consumer": spec.durable})
                    leaderless = False
                if not msgs:
                    continue
                progress.hold(msgs)
                try:
                    if self.batching is None or len(msgs) == 1:
                        for msg in msgs:
                            await self.handle(msg, progress, ack=True)
                    else:
                        await self.batch(msgs, self.batching, progress)
                finally:
                    progress.release_all()
        finally:
            await progress.close()
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def batch(self, msgs: list[Msg], batching: Batching, progress: _Progress) -> None:
        spec = self.spec
        handled = await self._handle_all(msgs, batching, progress)
        outage = _OutageWait(self, len(handled))
        while True:
            try:
                await batching.after()
                break
            except Exception as err:
                if await outage.pause(err):
                    # What the batch collected is gone with the failure: handle its
                    # messages again (handlers are idempotent), as a redelivery would.
                    handled = await self._handle_all(handled, batching, progress, again=True)
                    continue
                reason = f"{type(err).__name__}: {err}"
                log.warning(
                    "batch completion failed, redelivering %s messages: %s",
                    len(handled),
                    err,
                    extra={"consumer": spec.durable, "error": reason},
                )
                for msg in handled:
                    if msg.metadata.num_delivered >= spec.max_deliver:  # no redelivery would come
                        await self.give_up(msg, progress, err, reason)
                    else:
                        await self.nak(msg, progress, 1.0)
                return
        outage.over()
        for msg in handled:
            await _settle(msg.ack(), self.spec, msg, "ack", progress)

    async def _handle_all(
        self, msgs: list[Msg], batching: Batching, progress: _Progress, *, again: bool = False
    ) -> list[Msg]:
        """``before``, then each message's handler; the messages handled (not yet acked)."""
        try:
            await batching.before(msgs)
        except Exception as err:  # an optimisation only: the handlers read for themselves
            log.warning("batch preparation failed: %s", err, extra={"consumer": self.spec.durable})
        return [msg for msg in msgs if await self.handle(msg, progress, ack=False, again=again)]

    async def handle(
        self, msg: Msg, progress: _Progress, *, ack: bool, again: bool = False
    ) -> bool:
        """Run the handler; True when it succeeded or the gate set the message aside (and the
        message was acked, with ``ack``). ``again``: the same delivery handled a second
        time (its batch's completion waited out an outage)."""
        spec = self.spec
        deliveries = msg.metadata.num_delivered
        if not again:
            if self.gives_up_lost and deliveries > spec.max_deliver:
                lost = DeliveriesLostError(f"none of its {deliveries - 1} deliveries was settled")
                reason = f"{type(lost).__name__}: {lost}"
                log.error(
                    "giving up on a message whose worker died at every delivery",
                    extra={**_about(msg), "consumer": spec.durable, "error": reason},
                )
                await self.give_up(msg, progress, lost, reason)
                return False
            if deliveries > 1:
                self.resumed(msg, deliveries)
        outage = _OutageWait(self, 1)
        while True:
            try:
                if self.gate is None or await self.gate.admit(msg):
                    await self.handler(msg)
                break
            except Exception as err:
                if await outage.pause(err):
                    continue
                reason = f"{type(err).__name__}: {err}"
                if deliveries >= spec.max_deliver:
                    log.error(
                        "parking message after %s deliveries",
                        deliveries,
                        extra={"consumer": spec.durable, "subject": msg.subject, "error": reason},
                    )
                    await self.give_up(msg, progress, err, reason)
                    return False
                delay = (
                    err.delay if isinstance(err, RetryLaterError) else min(2.0**deliveries * 0.1, 5)
                )
                log.warning(
                    "handler failed, redelivering in %.1fs",
                    delay,
                    extra={"consumer": spec.durable, "subject": msg.subject, "error": reason},
                )
                await self.nak(msg, progress, delay)
                return False
        outage.over()
        if ack:
            await _settle(msg.ack(), spec, msg, "ack", progress)
        return True

    def resumed(self, msg: Msg, deliveries: int) -> None:
        """Log a message picked up again after a delivery that was never settled (a worker
        that died or lost the server): not one this process nak'ed, whose retry was logged
        when it failed. (A nak by another process is logged here too.)"""
        sequence = _stream_sequence(msg)
        if sequence is not None and sequence in self.naked:
            del self.naked[sequence]
            return
        about = _about(msg)
        what = about.get("event_type") or msg.subject
        of = f" of {about['aggregate']} {about['aggregate_id']}" if "aggregate_id" in about else ""
        log.info(
            "resuming %s%s (delivery %s)",
            what,
            of,
            deliveries,
            extra={**about, "consumer": self.spec.durable, "deliveries": deliveries},
        )

    async def nak(self, msg: Msg, progress: _Progress, delay: float) -> None:
        sequence = _stream_sequence(msg)
        if sequence is not None:
            self.naked[sequence] = None
            if len(self.naked) > _NAKED_KEPT:
                del self.naked[next(iter(self.naked))]
        await _settle(msg.nak(delay=delay), self.spec, msg, "nak", progress)

    async def give_up(self, msg: Msg, progress: _Progress, err: BaseException, reason: str) -> None:
        """Park the message, tell the gate, terminate it. What cannot be recorded after a
        few tries (the database away, or a message ``park`` cannot read) is logged with the
        message and terminated all the same: one message must not hold a worker forever.
        The message is still reported in progress meanwhile."""
        spec, gate = self.spec, self.gate
        await _persist(lambda: self.park(msg, reason), self, msg, "park")
        if gate is not None:
            await _persist(lambda: gate.gave_up(msg, err), self, msg, "quarantine")
        await _settle(msg.term(), spec, msg, "term", progress)


def _stream_sequence(msg: Msg) -> int | None:
    sequence = getattr(msg.metadata, "sequence", None)
    return getattr(sequence, "stream", None)


def _about(msg: Msg) -> dict[str, Any]:
    """What a log line says of an event envelope (``cinderblock.wire.envelope``, read as
    plain JSON: the bus does not import it): its type, volume, action and request id.
    Nothing for another payload."""
    try:
        env = json.loads(msg.data)
    except ValueError:
        return {}
    if not isinstance(env, dict) or not isinstance(env.get("type"), str):
        return {}
    event_type: str = env["type"]
    aggregate, _, name = event_type.partition(".")
    about: dict[str, Any] = {
        "subject": msg.subject,
        "event_type": event_type,
        "action": name.removesuffix("_requested"),
        "request_id": env.get("request_id"),
        "aggregate": env.get("aggregate") or aggregate,
    }
    if "aggregate_id" in env:
        about["aggregate_id"] = env["aggregate_id"]
    data = env.get("data")
    volume_id = env.get("aggregate_id") if about["aggregate"] == "volume" else None
    if volume_id is None and isinstance(data, dict):
        volume_id = data.get("volume_id")
    if volume_id is not None:
        about["volume_id"] = volume_id
    return about


# Parking a message (a row in the database) is retried after these delays while it fails.
_PARK_RETRIES = (0.5, 1.0, 2.0, 4.0)


async def _persist(
    record: Callable[[], Awaitable[None]], consumer: _Consumer, msg: Msg, what: str
) -> None:
    """Record a message given up; an outage is waited out (the record must not be lost
    to it), other failures are retried a few times before the message is dropped."""
    spec = consumer.spec
    outage = _OutageWait(consumer, 1)
    retries = iter((*_PARK_RETRIES, None))
    while True:
        try:
            await record()
            outage.over()
            return
        except Exception as err:
            if await outage.pause(err):
                continue
            delay = next(retries)
            extra = {
                "consumer": spec.durable,
                "subject": msg.subject,
                "error": f"{type(err).__name__}: {err}",
            }
            if delay is None:
                extra["payload"] = msg.data[:2000].decode(errors="replace")
                log.error("could not %s a message given up; dropping it", what, extra=extra)
                return
            log.warning("could not %s a message given up, retrying", what, extra=extra)
            await asyncio.sleep(delay)


# Pauses between attempts while a server the handler needs is away (seconds, the last
# repeated).
_OUTAGE_PAUSES = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class _OutageWait:
    """One attempt's wait-out of an outage (``_Consumer.outage``): ``pause`` says whether
    to try again (after a pause) and logs when the outage began; ``over`` logs its end."""

    def __init__(self, consumer: _Consumer, held: int) -> None:
        self.consumer = consumer
        self.held = held
        self.began: float | None = None
        self.pauses = 0

    async def pause(self, err: BaseException) -> bool:
        consumer = self.consumer
        if consumer.outage is None or consumer.stop.is_set() or not consumer.outage(err):
            return False
        loop = asyncio.get_running_loop()
        if self.began is None:
            self.began = loop.time()
            log.warning(
                "a server this consumer needs is unavailable: holding %s message(s), "
                "trying again until it is back",
                self.held,
                extra={
                    "consumer": consumer.spec.durable,
                    "error": f"{type(err).__name__}: {err}",
                },
            )
        pause = _OUTAGE_PAUSES[min(self.pauses, len(_OUTAGE_PAUSES) - 1)]
        self.pauses += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consumer.stop.wait(), pause)
        return not consumer.stop.is_set()

    def over(self) -> None:
        if self.began is None:
            return
        log.info(
            "the unavailable server is back after %.1f s: carrying on",
            asyncio.get_running_loop().time() - self.began,
            extra={"consumer": self.consumer.spec.durable, "attempts": self.pauses + 1},
        )
        self.began = None


async def _settle(
    done: Awaitable[None], spec: ConsumerSpec, msg: Msg, what: str, progress: _Progress
) -> None:
    """Ack, nak or term; a failure (the connection away) leaves the message to the server's
    redelivery."""
    progress.release(msg)
    try:
        await done
    except nats.errors.Error as err:
        log.warning(
            "could not %s a message: %s",
            what,
            err,
            extra={"consumer": spec.durable, "subject": msg.subject},
        )
