"""A handler that runs longer than the consumer's ack wait keeps its message: the consumer
loop reports progress, so JetStream never hands the same message to a second worker while
the first is still on it (a big copy or upload would otherwise run twice)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import nats
import nats.js.errors
from nats.aio.msg import Msg

from cinderblock.bus.jetstream import (
    ConsumerSpec,
    StreamSpec,
    ensure_stream,
    run_consumer,
)
from tests.helpers.servers import Servers


async def test_a_slow_handler_is_not_redelivered_while_it_runs(servers: Servers) -> None:
    name = f"CBT_PROGRESS_{uuid.uuid4().hex[:8].upper()}"
    subject = f"cbt.progress.{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream()
    try:
        await ensure_stream(js, StreamSpec(name, [f"{subject}.>"]))
        deliveries: list[int] = []
        done = asyncio.Event()

        async def slow(msg: Msg) -> None:
            deliveries.append(msg.metadata.num_delivered)
            await asyncio.sleep(3.5)  # the slow step itself: 3.5 ack waits long
            done.set()

        async def park(msg: Msg, reason: str) -> None:
            raise AssertionError(f"parked: {reason}")

        spec = ConsumerSpec(name, "progress", [f"{subject}.>"], ack_wait=1.0, workers=2)
        stop = asyncio.Event()
        consumer = asyncio.create_task(run_consumer(js, spec, slow, park, stop))
        await js.publish(f"{subject}.one", b"{}")
        await asyncio.wait_for(done.wait(), 20)
        # Without progress reports the server would have redelivered three times by now
        # (ack wait 1 s, step 3.5 s) to the second, idle worker.
        stop.set()
        await asyncio.wait_for(consumer, 10)  # the workers finish their message (the ack)
        info = await js.consumer_info(name, "progress")
        assert deliveries == [1]
        assert info.num_ack_pending == 0
        assert info.num_redelivered == 0
    finally:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
        await nc.close()


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
                if len(handled) >= 10:
                    done.set()

        async def handler(msg: Msg) -> None:
            handled.append((msg.data.decode(), msg.metadata.num_delivered))

        async def park(msg: Msg, reason: str) -> None:
            raise AssertionError(f"parked: {reason}")

        spec = ConsumerSpec(name, "batch", [f"{subject}.>"], ack_wait=5.0, workers=1, batch=16)
        stop = asyncio.Event()
        consumer = asyncio.create_task(run_consumer(js, spec, handler, park, stop, Hooks()))
        await asyncio.wait_for(done.wait(), 20)
        stop.set()
        await asyncio.wait_for(consumer, 10)
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
