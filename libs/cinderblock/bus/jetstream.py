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


async def publish_all(
    js: JetStreamContext, messages: Sequence[OutMessage], *, timeout: float = 10.0
) -> int:
    """Publish pipelined and wait for every PubAck; returns how many were duplicates.

    Raises if any publish failed: the caller retries the whole batch, and ``Nats-Msg-Id``
    makes the retry harmless.
    """
    futures = [
        await js.publish_async(m.subject, m.payload, headers={"Nats-Msg-Id": m.msg_id, **m.headers})
        for m in messages
    ]
    async with asyncio.timeout(timeout):
        acks = await asyncio.gather(*futures)
    return sum(1 for ack in acks if ack.duplicate)


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


async def run_consumer(
    js: JetStreamContext,
    spec: ConsumerSpec,
    handler: Handler,
    park: Park,
    stop: asyncio.Event,
    batching: Batching | None = None,
) -> None:
    """Handle messages until ``stop`` with ``spec.workers`` pull subscriptions on the durable.

    Each message is acked after its handler returns, nak'ed with a delay when it raises, and
    parked then terminated on its last allowed delivery. Each worker pulls one message at a
    time: nats-py's batched fetch waits for a full batch once it lingers, which would add
    up to the fetch timeout to every saga step. With ``spec.batch`` > 1 a pull takes what is
    available (up to the batch) at once, handled one by one in stream order, with
    ``batching``'s hooks around each batch of more than one message.
    """
    await ensure_consumer(js, spec)
    await asyncio.gather(
        *(_worker(js, spec, handler, park, stop, batching) for _ in range(spec.workers))
    )


async def _worker(
    js: JetStreamContext,
    spec: ConsumerSpec,
    handler: Handler,
    park: Park,
    stop: asyncio.Event,
    batching: Batching | None,
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
                    await _handle(msg, spec, handler, park, ack=True)
                continue
            await _handle_batch(msgs, spec, handler, park, batching)
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


async def _handle_batch(
    msgs: list[Msg], spec: ConsumerSpec, handler: Handler, park: Park, batching: Batching
) -> None:
    try:
        await batching.before(msgs)
    except Exception as err:  # an optimisation only: the handlers read for themselves
        log.warning("batch preparation failed: %s", err, extra={"consumer": spec.durable})
    handled = [msg for msg in msgs if await _handle(msg, spec, handler, park, ack=False)]
    try:
        await batching.after()
    except Exception as err:
        log.warning(
            "batch completion failed, redelivering %s messages: %s",
            len(handled),
            err,
            extra={"consumer": spec.durable, "error": f"{type(err).__name__}: {err}"},
        )
        for msg in handled:
            with contextlib.suppress(nats.errors.Error):
                await msg.nak(delay=1.0)
        return
    for msg in handled:
        await msg.ack()


async def _keep_alive(msg: Msg, every: float) -> None:
    """Tell the server the message is still being worked on, so a step that runs longer
    than the ack wait (a big copy or upload) is not handed to a second worker meanwhile."""
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(nats.errors.Error):
            await msg.in_progress()


async def _handle(msg: Msg, spec: ConsumerSpec, handler: Handler, park: Park, *, ack: bool) -> bool:
    """Run the handler; True when it succeeded (and the message was acked, with ``ack``)."""
    alive = asyncio.create_task(_keep_alive(msg, spec.ack_wait / 3))
    try:
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
            await park(msg, reason)
            await msg.term()
            return False
        delay = err.delay if isinstance(err, RetryLaterError) else min(2.0**deliveries * 0.1, 5)
        log.warning(
            "handler failed, redelivering in %.1fs",
            delay,
            extra={"consumer": spec.durable, "subject": msg.subject, "error": reason},
        )
        await msg.nak(delay=delay)
        return False
    finally:
        alive.cancel()
    if ack:
        await msg.ack()
    return True
