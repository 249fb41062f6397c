"""A database outage is waited out, not counted: a handler (or a batch's completion) that
fails because the database is away is tried again in place, with its message held, until
the database answers. No delivery is spent on it, so an outage longer than ``max_deliver``
redeliveries gives nothing up (before, a message could be parked, and when parking failed
too, dropped), and each aggregate's messages stay in order.

The failures are real asyncpg ones: a connection refused by a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator

import asyncpg
import nats
import nats.js.errors
import pytest
import pytest_asyncio
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from cinderblock.bus.jetstream import ConsumerSpec, StreamSpec, ensure_stream, run_consumer
from cinderblock.runtime.outage import database_unavailable
from tests.helpers.servers import Servers

pytestmark = pytest.mark.integration

BOUND = 20.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _outage_error() -> BaseException:
    """What asyncpg raises when the database is not there."""
    caught: BaseException | None = None
    try:
        await asyncpg.connect(f"postgresql://nobody@127.0.0.1:{_closed_port()}/none", timeout=2)
    except Exception as err:
        caught = err
    assert caught is not None, "a closed port accepted a connection"
    assert database_unavailable(caught)
    return caught


class Flaky:
    """Fails with the database's outage error ``failures`` times, then records messages."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.handled: list[tuple[bytes, int]] = []
        self.done = asyncio.Event()
        self.expected = 0

    async def handle(self, msg: Msg) -> None:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise await _outage_error()
        self.handled.append((msg.data, msg.metadata.num_delivered))
        if len(self.handled) >= self.expected:
            self.done.set()


class Parked:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    async def park(self, msg: Msg, reason: str) -> None:
        self.reasons.append(reason)


class Batches:
    """Batching hooks whose completion fails with an outage ``failures`` times."""

    def __init__(self, failures: int, flaky: Flaky, total: int) -> None:
        self.failures = failures
        self.flaky = flaky
        self.total = total
        self.befores = 0
        self.afters = 0
        self.done = asyncio.Event()  # a completion succeeded and every message was handled

    async def before(self, msgs: list[Msg]) -> None:
        self.befores += 1

    async def after(self) -> None:
        self.afters += 1
        if self.failures > 0:
            self.failures -= 1
            raise await _outage_error()
        if len({d for d, _ in self.flaky.handled}) == self.total:
            self.done.set()


@pytest_asyncio.fixture(loop_scope="session")
async def stream(servers: Servers) -> AsyncIterator[tuple[object, str, str]]:
    name = f"CBT_OUTAGE_{uuid.uuid4().hex[:8].upper()}"
    subject = f"cbt.outage.{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream()
    try:
        await ensure_stream(js, StreamSpec(name, [f"{subject}.>"]))
        yield nc, name, subject
    finally:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
        await nc.close()


async def _settled(js: JetStreamContext, stream: str, durable: str) -> ConsumerInfo:
    """The durable once no message is waiting for an ack (no event says the acks landed:
    its state is read until they did)."""
    async with asyncio.timeout(BOUND):
        while (info := await js.consumer_info(stream, durable)).num_ack_pending:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return info


async def _consume(
    nc: nats.aio.client.Client,
    spec: ConsumerSpec,
    flaky: Flaky,
    parked: Parked,
    batching: Batches | None = None,
    done: asyncio.Event | None = None,
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_consumer(
            nc.jetstream(),
            spec,
            flaky.handle,
            parked.park,
            stop,
            batching,
            outage=database_unavailable,
        )
    )
    try:
        await asyncio.wait_for((done or flaky.done).wait(), BOUND)
    finally:
        stop.set()
        await asyncio.wait_for(task, BOUND)


async def test_an_outage_longer_than_every_delivery_is_waited_out(
    stream: tuple[nats.aio.client.Client, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    nc, name, subject = stream
    js = nc.jetstream()
    # Three deliveries allowed, eight failures: counted as deliveries, they would park it.
    spec = ConsumerSpec(name, "outage-handler", [f"{subject}.>"], max_deliver=3, workers=1)
    await js.publish(f"{subject}.one", b"first")
    await js.publish(f"{subject}.two", b"second")
    flaky, parked = Flaky(failures=8), Parked()
    flaky.expected = 2
    with caplog.at_level(logging.INFO, logger="cinderblock.bus.jetstream"):
        await _consume(nc, spec, flaky, parked)
    assert flaky.handled == [(b"first", 1), (b"second", 1)]  # in order, first delivery
    assert flaky.calls == 10
    assert parked.reasons == []
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable: holding 1 message(s)" in m for m in messages) == 1
    assert sum("is back after" in m for m in messages) == 1
    info = await _settled(js, name, "outage-handler")
    assert info.num_redelivered == 0


async def test_a_batch_completion_during_an_outage_handles_the_batch_again(
    stream: tuple[nats.aio.client.Client, str, str],
) -> None:
    nc, name, subject = stream
    js = nc.jetstream()
    spec = ConsumerSpec(name, "outage-batch", [f"{subject}.>"], max_deliver=2, workers=1, batch=16)
    for i in range(5):
        await js.publish(f"{subject}.b", str(i).encode())
    flaky, parked = Flaky(failures=0), Parked()
    flaky.expected = 10**6  # done is the batches' own
    batches = Batches(failures=4, flaky=flaky, total=5)
    await _consume(nc, spec, flaky, parked, batches, batches.done)
    # The batch is handled again after each failed completion (a first pull may take
    # fewer than all five), and every delivery is the first one.
    assert {d for d, _ in flaky.handled} == {str(i).encode() for i in range(5)}
    assert len(flaky.handled) >= 5 + 4
    assert {n for _, n in flaky.handled} == {1}
    assert batches.failures == 0
    assert parked.reasons == []
    info = await _settled(js, name, "outage-batch")
    assert info.num_redelivered == 0
    assert info.delivered.stream_seq == info.ack_floor.stream_seq
