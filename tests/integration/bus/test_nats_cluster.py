"""A three-node NATS cluster with streams of three replicas (``CINDERBLOCK_STREAM_REPLICAS=3``,
``CINDERBLOCK_NATS_URL`` naming the three nodes) loses nothing when a node dies mid-load:
the stream's leader is SIGKILLed while events are published (``publish_all`` with
``Nats-Msg-Id``, the batch retried on failure as the relay does) and a durable consumer
(``run_consumer``) takes them. Every event is consumed; each is stored once (the
de-duplication survives the new leader); a message handled twice is a redelivery of the
same stored message, which the handler's idempotency absorbs; and the cluster takes
publishes again within a bounded wait after the kill.

When the killed node also led the durable, the workers' pull requests are answered 503
while the durable elects a new leader: the pull loop pauses and pulls again (it once
ended there, taking a service's consumer with it)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from cinderblock.billing.run import notification_stream
from cinderblock.bus.connection import connect
from cinderblock.bus.jetstream import (
    ConsumerSpec,
    OutMessage,
    StreamSpec,
    ensure_consumer,
    ensure_stream,
    publish_all,
    run_consumer,
)
from cinderblock.config.settings import Settings
from cinderblock.runtime.streams import stream_spec
from tests.helpers.nats_cluster import NatsCluster, nats_cluster

pytestmark = pytest.mark.integration

EVENTS = 3000
BATCH = 50  # events per publish_all, retried whole on failure (as the relay does)
RECOVERY_BOUND = 20.0  # seconds without an accepted publish after the kill
BOUND = 40.0  # seconds for the whole run to be published and consumed


@pytest_asyncio.fixture(loop_scope="session")
async def cluster() -> AsyncIterator[NatsCluster]:
    async with nats_cluster() as c:
        yield c


def cluster_settings(cluster: NatsCluster) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        nats_url=cluster.url,
        stream=f"CBT_CLUSTER_{tag.upper()}",
        subject_prefix=f"cbt{tag}.",
        stream_replicas=3,
    )


class Watch:
    """Counters the test waits on: every change wakes the waiters (no polling sleeps)."""

    def __init__(self) -> None:
        self.changed = asyncio.Condition()

    async def touch(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout), self.changed:
                await self.changed.wait_for(check)
        except TimeoutError:
            raise AssertionError(f"{what}: not within {timeout}s") from None


@dataclass
class Run:
    watch: Watch = field(default_factory=Watch)
    published: int = 0  # events whose batch was acked
    failures: list[str] = field(default_factory=list)  # publish attempts that failed
    killed_at: float | None = None
    killed: asyncio.Event = field(default_factory=asyncio.Event)  # set right after the kill
    acked_at: list[float] = field(default_factory=list)  # when each batch was acked
    # msg id -> the stream sequence of every delivery handled
    handled: dict[str, list[int]] = field(default_factory=dict)
    redelivered: int = 0  # deliveries with num_delivered > 1
    parked: list[str] = field(default_factory=list)

    @property
    def consumed(self) -> int:
        return len(self.handled)

    async def handler(self, msg: Msg) -> None:
        msg_id = (msg.headers or {})["Nats-Msg-Id"]
        self.handled.setdefault(msg_id, []).append(msg.metadata.sequence.stream)
        if msg.metadata.num_delivered > 1:
            self.redelivered += 1
        await self.watch.touch()

    async def park(self, msg: Msg, reason: str) -> None:
        self.parked.append(reason)

    async def publish(self, js: JetStreamContext, settings: Settings) -> None:
        for start in range(0, EVENTS, BATCH):
            if start >= EVENTS // 2:  # the rest only once the node is killed: always mid-load
                await self.killed.wait()
            batch = [
                OutMessage(
                    subject=settings.subject(f"volume.events.v{i % 16}"),
                    payload=b'{"n": %d}' % i,
                    msg_id=f"e-{i}",
                )
                for i in range(start, min(start + BATCH, EVENTS))
            ]
            while True:
                try:
                    await publish_all(js, batch, timeout=2.0)
                    break
                except (nats.errors.Error, TimeoutError) as err:
                    self.failures.append(f"{type(err).__name__}: {err}")
                    await asyncio.sleep(0.1)  # retry pace, as the relay's
            self.published += len(batch)
            self.acked_at.append(time.monotonic())
            await self.watch.touch()

    def longest_refusal(self) -> float:
        """The longest time after the kill without a batch acked (from the kill to the first
        batch acked after it, or between two batches)."""
        assert self.killed_at is not None
        times = [self.killed_at, *(t for t in self.acked_at if t > self.killed_at)]
        return max(b - a for a, b in itertools.pairwise(times))


async def test_stream_replicas_reach_the_streams(
    cluster: NatsCluster, caplog: pytest.LogCaptureFixture
) -> None:
    settings = cluster_settings(cluster)
    async with connect(settings.nats_url, "test-settings") as nc:
        js = nc.jetstream()
        for spec in (stream_spec(settings), notification_stream(settings)):
            try:
                info = await ensure_stream(js, spec)
                assert info.config.num_replicas == 3
                info = await js.stream_info(spec.name)
                assert info.config.num_replicas == 3
                assert info.cluster is not None
                assert info.cluster.leader in {n.name for n in cluster.nodes}
                assert len(info.cluster.replicas or []) == 2  # the leader's two peers
            finally:
                await js.delete_stream(spec.name)

        # A stream made with one replica takes three at the next start, and says so.
        name = f"{settings.stream}_GROWN"
        try:
            await ensure_stream(js, StreamSpec(name, [settings.subject("grown.>")]))
            assert (await js.stream_info(name)).config.num_replicas == 1
            with caplog.at_level(logging.INFO, logger="cinderblock.bus.jetstream"):
                await ensure_stream(js, StreamSpec(name, [settings.subject("grown.>")], replicas=3))
            info = await js.stream_info(name)
            assert info.config.num_replicas == 3
            assert "stream updated: num_replicas 1 -> 3" in caplog.text
        finally:
            await js.delete_stream(name)


@pytest.mark.parametrize(
    "durable_with_it",
    [
        pytest.param(False, id="stream-leader"),
        pytest.param(True, id="stream-and-durable-leader"),
    ],
)
async def test_a_killed_node_loses_no_event(cluster: NatsCluster, durable_with_it: bool) -> None:
    """SIGKILL the stream's leader mid-load; with ``durable_with_it`` it leads the durable
    too (deliveries and acks in flight die with it), else the durable is led elsewhere."""
    settings = cluster_settings(cluster)
    spec = stream_spec(settings)
    run = Run()
    stop = asyncio.Event()
    async with (
        connect(settings.nats_url, "test-publisher") as pub,
        connect(settings.nats_url, "test-consumer") as sub,
    ):
        js = pub.jetstream()
        await ensure_stream(js, spec)
        await wait_replicas_current(js, spec.name)
        durable = ConsumerSpec(
            stream=spec.name,
            durable="cluster",
            filter_subjects=[settings.subject("volume.events.>")],
            ack_wait=2.0,
            max_deliver=20,
            workers=4,
            batch=16,
        )
        # run_consumer finds the durable as it is, led where this put it.
        await ensure_consumer(js, durable)
        leaders = await place_durable(cluster, pub, js, spec.name, durable.durable, durable_with_it)
        consumer = asyncio.create_task(
            run_consumer(sub.jetstream(), durable, run.handler, run.park, stop)
        )
        publisher = asyncio.create_task(run.publish(js, settings))
        try:
            # Mid-load: a third published, some of it consumed, the rest still to come.
            await run.watch.until(
                lambda: run.published >= EVENTS // 3 and run.consumed >= EVENTS // 6,
                BOUND,
                "a third published, a sixth consumed",
            )
            victim = cluster.kill(leaders[0])
            run.killed_at = time.monotonic()
            run.killed.set()
            at_kill = (run.published, run.consumed)

            await asyncio.wait_for(asyncio.shield(publisher), BOUND)
            await consumed_all(run, consumer)
        finally:
            stop.set()
            publisher.cancel()
            await asyncio.wait([publisher, consumer], timeout=10.0)
            consumer.cancel()

        assert at_kill[0] < EVENTS, "the kill came after the load"
        assert at_kill[1] < EVENTS, "the kill came after the load"
        recovery = run.longest_refusal()
        assert recovery < RECOVERY_BOUND, f"publishes refused for {recovery:.1f}s after the kill"

        # Every event consumed, each stored once: a retried batch was de-duplicated.
        assert set(run.handled) == {f"e-{i}" for i in range(EVENTS)}
        info = await js.stream_info(spec.name)
        assert info.state.messages == EVENTS
        assert info.cluster is not None
        assert info.cluster.leader != victim.name
        # A message handled twice is the same stored message delivered again.
        twice = {i: seqs for i, seqs in run.handled.items() if len(seqs) > 1}
        assert all(len(set(seqs)) == 1 for seqs in twice.values()), twice
        assert run.parked == []
        print(  # shown with -s: what the kill cost
            f"killed {victim.name} (leaders: stream {leaders[0]}, durable {leaders[1]}) at "
            f"{at_kill[0]} published / {at_kill[1]} consumed; publishes refused for "
            f"{recovery:.2f}s at most ({len(run.failures)} failed attempts); {len(twice)} events "
            f"handled more than once, {run.redelivered} redeliveries"
        )


async def consumed_all(run: Run, consumer: asyncio.Task[None]) -> None:
    """Wait until every event was handled; raise at once what ended the consumer, if it
    ended first."""
    waiting = asyncio.create_task(
        run.watch.until(lambda: run.consumed >= EVENTS, BOUND, "every event consumed")
    )
    await asyncio.wait([waiting, consumer], return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        consumer.result()  # what ended it
        raise AssertionError("the consumer ended before every event was consumed")
    waiting.result()


async def wait_replicas_current(js: JetStreamContext, stream: str, timeout: float = 10.0) -> None:
    """Wait until the stream has a leader and both followers are caught up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        info = await js.stream_info(stream)
        peers = info.cluster.replicas if info.cluster else None
        if info.cluster and info.cluster.leader and peers and all(p.current for p in peers):
            return
        if loop.time() > deadline:
            raise AssertionError(f"stream {stream} replicas not current in {timeout}s: {info}")
        await asyncio.sleep(0.1)  # polling pace only: the deadline decides


async def place_durable(
    cluster: NatsCluster,
    nc: Client,
    js: JetStreamContext,
    stream: str,
    durable: str,
    with_stream: bool,
    tries: int = 5,
) -> tuple[str, str]:
    """Move the durable's leadership onto the stream's leader (``with_stream``) or onto
    another node, by step-downs naming the preferred node; returns (stream leader, durable
    leader) once placed."""
    for _ in range(tries):
        leader = await stream_leader(js, stream)
        placed = await consumer_leader(js, stream, durable)
        if (placed == leader) == with_stream:
            return leader, placed
        preferred = (
            leader if with_stream else next(n.name for n in cluster.nodes if n.name != leader)
        )
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await nc.request(
                f"$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{durable}",
                json.dumps({"placement": {"preferred": preferred}}).encode(),
                timeout=5.0,
            )
    raise AssertionError(f"durable {durable} not placed in {tries} step-downs")


async def stream_leader(js: JetStreamContext, stream: str, timeout: float = 10.0) -> str:
    """The stream's leader, waiting (bounded) while it has none."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        info = await js.stream_info(stream)
        if info.cluster is not None and info.cluster.leader:
            return info.cluster.leader
        if loop.time() > deadline:
            raise AssertionError(f"stream {stream} without a leader for {timeout}s")
        await asyncio.sleep(0.1)  # polling pace only: the deadline decides


async def consumer_leader(
    js: JetStreamContext, stream: str, durable: str, timeout: float = 10.0
) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            info = await js.consumer_info(stream, durable)
            if info.cluster is not None and info.cluster.leader:
                return info.cluster.leader
        if loop.time() > deadline:
            raise AssertionError(f"durable {durable} without a leader for {timeout}s")
        await asyncio.sleep(0.1)  # polling pace only: the deadline decides
