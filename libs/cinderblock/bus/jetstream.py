"""NATS JetStream mechanics: stream convergence, pipelined de-duplicated publishing, and a
durable pull-consumer loop with explicit ack, nak with delay, and dead-letter parking."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: list[str]
    duplicate_window: float = 600.0  # seconds


async def ensure_stream(js: JetStreamContext, spec: StreamSpec) -> None:
    """Create the stream, or bring an existing one to this configuration."""
    config = StreamConfig(
        name=spec.name,
        subjects=spec.subjects,
        storage=StorageType.FILE,
        duplicate_window=spec.duplicate_window,
    )
    try:
        await js.stream_info(spec.name)
    except nats.js.errors.NotFoundError:
        with contextlib.suppress(nats.js.errors.BadRequestError):
            await js.add_stream(config)
            return
    await js.update_stream(config)


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


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    filter_subjects: list[str]
    ack_wait: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 1000
    workers: int = 8
    # Only messages published after the durable was first created (a consumer turned on
    # late must not act on the whole history); the durable keeps its place afterwards.
    deliver_new: bool = False
    # Messages per pull. 1 for sagas (no step waits for others); a consumer that keeps
    # up with the whole stream (billing) takes what is there, up to ``batch``, per pull.
    batch: int = 1


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    config = ConsumerConfig(
        durable_name=spec.durable,
        ack_policy=AckPolicy.EXPLICIT,
        filter_subjects=spec.filter_subjects,
        ack_wait=spec.ack_wait,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
    )
    if spec.deliver_new:
        config.deliver_policy = DeliverPolicy.NEW
    await js.add_consumer(spec.stream, config)


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
) -> None:
    """Handle messages until ``stop`` with ``spec.workers`` pull subscriptions on the durable.

    Each message is acked after its handler returns, nak'ed with a delay when it raises, and
    parked then terminated on its last allowed delivery. Each worker pulls one message at a
    time: nats-py's batched fetch waits for a full batch once it lingers, which would add
    up to the fetch timeout to every saga step. With ``spec.batch`` > 1 a pull takes what is
    available (up to the batch) at once, handled one by one in stream order, with
    ``batching``'s hooks around each batch of more than one message. ``gate`` sees each
    message first and may set it aside, and hears of every message given up.

    No message stops a worker: parking that fails is retried a few times, then the message
    is logged and terminated; a failed ack or nak is logged (the server redelivers).
    """
    await ensure_consumer(js, spec)
    await asyncio.gather(
        *(_worker(js, spec, handler, park, stop, batching, gate) for _ in range(spec.workers))
    )


async def _worker(
    js: JetStreamContext,
    spec: ConsumerSpec,
    handler: Handler,
    park: Park,
    stop: asyncio.Event,
    batching: Batching | None,
    gate: Gate | None,
) -> None:
    sub = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(spec.batch, timeout=0.5)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            if batching is None or len(msgs) == 1:
                for msg in msgs:
                    await _handle(msg, spec, handler, park, gate, ack=True)
                continue
            await _handle_batch(msgs, spec, handler, park, batching, gate)
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


async def _handle_batch(
    msgs: list[Msg],
    spec: ConsumerSpec,
    handler: Handler,
    park: Park,
    batching: Batching,
    gate: Gate | None,
) -> None:
    try:
        await batching.before(msgs)
    except Exception as err:  # an optimisation only: the handlers read for themselves
        log.warning("batch preparation failed: %s", err, extra={"consumer": spec.durable})
    handled = [msg for msg in msgs if await _handle(msg, spec, handler, park, gate, ack=False)]
    try:
        await batching.after()
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
        log.warning(
            "batch completion failed, redelivering %s messages: %s",
            len(handled),
            err,
            extra={"consumer": spec.durable, "error": reason},
        )
        for msg in handled:
            if msg.metadata.num_delivered >= spec.max_deliver:  # no redelivery would come
                await _give_up(msg, spec, park, gate, err, reason)
            else:
                await _settle(msg.nak(delay=1.0), spec, msg, "nak")
        return
    for msg in handled:
        await _settle(msg.ack(), spec, msg, "ack")


async def _keep_alive(msg: Msg, every: float) -> None:
    """Tell the server the message is still being worked on, so a step that runs longer
    than the ack wait (a big copy or upload) is not handed to a second worker meanwhile."""
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(nats.errors.Error):
            await msg.in_progress()


async def _handle(
    msg: Msg, spec: ConsumerSpec, handler: Handler, park: Park, gate: Gate | None, *, ack: bool
) -> bool:
    """Run the handler; True when it succeeded or the gate set the message aside (and the
    message was acked, with ``ack``)."""
    alive = asyncio.create_task(_keep_alive(msg, spec.ack_wait / 3))
    try:
        if gate is None or await gate.admit(msg):
            await handler(msg)
    except Exception as err:
        deliveries = msg.metadata.num_delivered
        reason = f"{type(err).__name__}: {err}"
        if deliveries >= spec.max_deliver:
            log.error(
                "parking message after %s deliveries",
                deliveries,
                extra={"consumer": spec.durable, "subject": msg.subject, "error": reason},
            )
            await _give_up(msg, spec, park, gate, err, reason)
            return False
        delay = err.delay if isinstance(err, RetryLaterError) else min(2.0**deliveries * 0.1, 5)
        log.warning(
            "handler failed, redelivering in %.1fs",
            delay,
            extra={"consumer": spec.durable, "subject": msg.subject, "error": reason},
        )
        await _settle(msg.nak(delay=delay), spec, msg, "nak")
        return False
    finally:
        alive.cancel()
    if ack:
        await _settle(msg.ack(), spec, msg, "ack")
    return True


# Parking a message (a row in the database) is retried after these delays while it fails.
_PARK_RETRIES = (0.5, 1.0, 2.0, 4.0)


async def _give_up(
    msg: Msg, spec: ConsumerSpec, park: Park, gate: Gate | None, err: BaseException, reason: str
) -> None:
    """Park the message, tell the gate, terminate it. What cannot be recorded after a few
    tries (the database away, or a message ``park`` cannot read) is logged with the message
    and terminated all the same: one message must not hold a worker forever."""
    await _persist(lambda: park(msg, reason), spec, msg, "park")
    if gate is not None:
        await _persist(lambda: gate.gave_up(msg, err), spec, msg, "quarantine")
    await _settle(msg.term(), spec, msg, "term")


async def _persist(
    record: Callable[[], Awaitable[None]], spec: ConsumerSpec, msg: Msg, what: str
) -> None:
    for delay in (*_PARK_RETRIES, None):
        try:
            await record()
            return
        except Exception as err:
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


async def _settle(done: Awaitable[None], spec: ConsumerSpec, msg: Msg, what: str) -> None:
    """Ack, nak or term; a failure (the connection away) leaves the message to the server's
    redelivery."""
    try:
        await done
    except nats.errors.Error as err:
        log.warning(
            "could not %s a message: %s",
            what,
            err,
            extra={"consumer": spec.durable, "subject": msg.subject},
        )
