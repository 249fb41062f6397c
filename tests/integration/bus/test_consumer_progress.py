"""A handler that runs longer than the consumer's ack wait keeps its message: the worker
reports progress on what it holds, so JetStream neither hands the message to a second
worker nor counts a delivery while the first is still on it (a big copy or upload would
otherwise run twice). A worker that dies mid-message loses it for about one ack wait: a
fresh consumer gets it again, logs the resumption and handles it; a message whose every
delivery dies is still given up (parked) rather than left at the server's limit. An
existing durable takes a new ack wait at the next start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import nats
import nats.js.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from cinderblock.bus.jetstream import (
    ConsumerSpec,
    StreamSpec,
    ensure_consumer,
    ensure_stream,
    run_consumer,
)
from tests.helpers.servers import Servers

pytestmark = pytest.mark.integration

BOUND = 20.0  # seconds any awaited outcome gets before the test fails


@dataclass
class Stream:
    """A stream of its own, on one connection (more connections for the workers)."""

    servers: Servers
    nc: Client
    js: JetStreamContext
    name: str
    subject: str
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    connections: list[Client] = field(default_factory=list)

    def spec(self, durable: str, **options: object) -> ConsumerSpec:
        return ConsumerSpec(self.name, durable, [f"{self.subject}.>"], **options)  # type: ignore[arg-type]

    async def start(
        self, spec: ConsumerSpec, handler: Callable[[Msg], Awaitable[None]], park: Park
    ) -> tuple[asyncio.Task[None], Client]:
        """A consumer on a connection of its own (so it can die with it)."""
        nc = await nats.connect(self.servers.nats_url)
        self.connections.append(nc)
        task = asyncio.create_task(run_consumer(nc.jetstream(), spec, handler, park.record, Stop()))
        self.tasks.append(task)
        return task, nc


class Stop(asyncio.Event):
    """A stop never set: these consumers end by being cancelled (killed) or at teardown."""


@dataclass
class Park:
    reasons: list[str] = field(default_factory=list)
    parked: asyncio.Event = field(default_factory=asyncio.Event)

    async def record(self, msg: Msg, reason: str) -> None:
        self.reasons.append(reason)
        self.parked.set()


async def kill(task: asyncio.Task[None], nc: Client) -> None:
    """The worker dies mid-message: no ack, no nak, its connection gone."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await nc.close()


@pytest_asyncio.fixture(loop_scope="session")
async def stream(servers: Servers) -> AsyncIterator[Stream]:
    name = f"CBT_PROGRESS_{uuid.uuid4().hex[:8].upper()}"
    subject = f"cbt.progress.{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream()
    s = Stream(servers, nc, js, name, subject)
    try:
        await ensure_stream(js, StreamSpec(name, [f"{subject}.>"]))
        yield s
    finally:
        for task in s.tasks:
            task.cancel()
        for task in s.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for worker in s.connections:
            await worker.close()  # a no-op for the killed ones
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
        await nc.close()


async def watch_progress(s: Stream, durable: str, seen: Callable[[], None]) -> None:
    """Call ``seen`` for every in-progress report (``+WPI``) the durable's workers send."""

    async def on_ack(msg: Msg) -> None:
        if msg.data == b"+WPI":
            seen()

    await s.nc.subscribe(f"$JS.ACK.{s.name}.{durable}.>", cb=on_ack)
    await s.nc.flush()


async def test_a_handler_longer_than_the_ack_wait_is_delivered_once(stream: Stream) -> None:
    s = stream
    ack_wait = 1.0
    spec = s.spec("slow", ack_wait=ack_wait, workers=2)  # an idle worker to hand it to
    deliveries: list[int] = []
    started = asyncio.Event()
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    began = float("inf")
    reports = 0

    def seen() -> None:
        nonlocal reports
        reports += 1
        # At least two reports, and the step already 2.5 ack waits long: without them the
        # server would have redelivered twice by now.
        if reports >= 2 and loop.time() - began > 2.5 * ack_wait:
            release.set()

    async def slow(msg: Msg) -> None:
        nonlocal began
        deliveries.append(msg.metadata.num_delivered)
        began = loop.time()
        started.set()
        await release.wait()  # the slow step itself, until the test has seen enough

    await watch_progress(s, "slow", seen)
    park = Park()
    await s.start(spec, slow, park)
    await s.js.publish(f"{s.subject}.one", b"{}")
    await asyncio.wait_for(started.wait(), BOUND)
    await asyncio.wait_for(release.wait(), BOUND)

    async def settled() -> bool:
        info = await s.js.consumer_info(s.name, "slow")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await until(settled, "the slow message acked")
    info = await s.js.consumer_info(s.name, "slow")
    assert deliveries == [1]
    assert info.num_redelivered == 0
    assert reports >= 2
    assert park.reasons == []


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` (50 ms apart) for at most BOUND seconds."""
    for _ in range(int(BOUND / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached in {BOUND} s: {what}")


def envelope(volume_id: str, request_id: str) -> bytes:
    """An event envelope as the relay publishes it (the fields the log line reads)."""
    return (
        f'{{"id": "{volume_id}:3", "type": "volume.extend_requested", "aggregate": "volume",'
        f' "aggregate_id": "{volume_id}", "version": 3, "position": 9,'
        f' "occurred_at": "2026-01-01T00:00:00Z", "request_id": "{request_id}",'
        f' "data": {{"new_size_gb": 2}}}}'
    ).encode()


async def test_a_message_of_a_dead_worker_is_resumed_by_a_fresh_consumer(
    stream: Stream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cinderblock.bus.jetstream")
    s = stream
    spec = s.spec("resume", ack_wait=1.0, workers=1)
    volume_id, request_id = str(uuid.uuid4()), f"req-{uuid.uuid4()}"
    taken = asyncio.Event()
    handled: list[int] = []
    done = asyncio.Event()

    async def dies(msg: Msg) -> None:
        taken.set()
        await asyncio.Event().wait()  # mid-step when the worker is killed

    async def finishes(msg: Msg) -> None:
        handled.append(msg.metadata.num_delivered)
        done.set()

    park = Park()
    first, nc = await s.start(spec, dies, park)
    await s.js.publish(f"{s.subject}.extend", envelope(volume_id, request_id))
    await asyncio.wait_for(taken.wait(), BOUND)
    await kill(first, nc)

    await s.start(spec, finishes, park)
    await asyncio.wait_for(done.wait(), BOUND)  # redelivered and processed
    assert handled == [2]
    assert park.reasons == []
    resumed = [r for r in caplog.records if r.getMessage().startswith("resuming")]
    assert [r.getMessage() for r in resumed] == [
        f"resuming volume.extend_requested of volume {volume_id} (delivery 2)"
    ]
    (line,) = resumed
    assert (line.volume_id, line.action, line.request_id) == (volume_id, "extend", request_id)  # type: ignore[attr-defined]


async def test_a_retry_after_a_failure_is_not_logged_as_a_resumption(
    stream: Stream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cinderblock.bus.jetstream")
    s = stream
    spec = s.spec("retry", ack_wait=1.0, workers=1)
    handled: list[int] = []
    done = asyncio.Event()

    async def fails_once(msg: Msg) -> None:
        handled.append(msg.metadata.num_delivered)
        if len(handled) == 1:
            raise RuntimeError("of the moment")
        done.set()

    park = Park()
    await s.start(spec, fails_once, park)
    await s.js.publish(f"{s.subject}.retry", envelope(str(uuid.uuid4()), "req-r"))
    await asyncio.wait_for(done.wait(), BOUND)
    assert handled == [1, 2]
    assert not [r for r in caplog.records if r.getMessage().startswith("resuming")]


async def test_a_message_that_kills_every_worker_is_given_up(stream: Stream) -> None:
    """Every allowed delivery dies with its worker: the one delivery more the durable
    allows parks the message (the saga's give-up compensates) without running it again."""
    s = stream
    spec = s.spec("crashloop", ack_wait=1.0, max_deliver=2, workers=1)
    calls: list[int] = []
    park = Park()
    for delivery in (1, 2):
        taken = asyncio.Event()

        async def dies(msg: Msg, taken: asyncio.Event = taken) -> None:
            calls.append(msg.metadata.num_delivered)
            taken.set()
            await asyncio.Event().wait()

        task, nc = await s.start(spec, dies, park)
        if delivery == 1:
            await s.js.publish(f"{s.subject}.poison", b"{}")
        await asyncio.wait_for(taken.wait(), BOUND)
        await kill(task, nc)

    async def never(msg: Msg) -> None:
        calls.append(msg.metadata.num_delivered)

    await s.start(spec, never, park)
    await asyncio.wait_for(park.parked.wait(), BOUND)
    assert calls == [1, 2]  # the handler ran max_deliver times, never a third
    assert len(park.reasons) == 1
    assert park.reasons[0].startswith("DeliveriesLostError")

    async def terminated() -> bool:
        return (await s.js.consumer_info(s.name, "crashloop")).num_ack_pending == 0

    await until(terminated, "the lost message terminated")


async def test_an_existing_durable_takes_the_new_ack_wait(
    stream: Stream, caplog: pytest.LogCaptureFixture
) -> None:
    """A deployment's durable made with the old 30 s ack wait gets the new one at start."""
    caplog.set_level(logging.INFO, logger="cinderblock.bus.jetstream")
    s = stream
    old = ConsumerConfig(
        durable_name="old",
        ack_policy=AckPolicy.EXPLICIT,
        filter_subjects=[f"{s.subject}.>"],
        ack_wait=30.0,
        max_deliver=5,
        max_ack_pending=1000,
    )
    await s.js.add_consumer(s.name, old)

    info = await ensure_consumer(s.js, s.spec("old", ack_wait=5.0, max_deliver=5))

    assert (info.config.ack_wait, info.config.max_deliver) == (5.0, 6)
    stored = await s.js.consumer_info(s.name, "old")
    assert (stored.config.ack_wait, stored.config.max_deliver) == (5.0, 6)
    assert [r.getMessage() for r in caplog.records if "updated" in r.getMessage()] == [
        "durable consumer updated: ack_wait 30.0 -> 5.0, max_deliver 5 -> 6"
    ]


async def test_a_batch_is_acked_after_its_completion_hook_and_redelivered_if_it_fails(
    servers: Servers,
) -> None:
    """With batches, ``after`` runs once the batch's messages were handled and before they
    are acked; when it fails they come back (and are handled again)."""
    name = f"CBT_BATCH_{uuid.uuid4().hex[:8].upper()}"
    subject = f"cbt.batch.{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream()
    try:
        await ensure_stream(js, StreamSpec(name, [f"{subject}.>"]))
        for i in range(5):
            await js.publish(f"{subject}.m", str(i).encode())
        handled: list[tuple[str, int]] = []
        batches: list[int] = []
        done = asyncio.Event()

        class Hooks:
            failures = 1

            async def before(self, msgs: list[Msg]) -> None:
                batches.append(len(msgs))

            async def after(self) -> None:
                if self.failures:
                    self.failures -= 1
                    raise RuntimeError("publishing failed")

        async def handler(msg: Msg) -> None:
            handled.append((msg.data.decode(), msg.metadata.num_delivered))
            # The redeliveries may come back in pulls of one (no hooks then): the last
            # handling, not the last completion, says the test has seen everything.
            if len(handled) >= 10:
                done.set()

        async def park(msg: Msg, reason: str) -> None:
            raise AssertionError(f"parked: {reason}")

        spec = ConsumerSpec(name, "batch", [f"{subject}.>"], ack_wait=5.0, workers=1, batch=16)
        stop = asyncio.Event()
        consumer = asyncio.create_task(run_consumer(js, spec, handler, park, stop, Hooks()))
        await asyncio.wait_for(done.wait(), 20)
        stop.set()
        await asyncio.wait_for(consumer, 10)  # the last one is acked before the loop ends
        info = await js.consumer_info(name, "batch")
        assert batches[0] == 5  # what was there, in one pull
        assert [d for d, n in handled if n == 1] == ["0", "1", "2", "3", "4"]
        assert sorted(d for d, n in handled if n == 2) == ["0", "1", "2", "3", "4"]
        assert info.num_ack_pending == 0
        assert info.num_pending == 0
    finally:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
        await nc.close()
