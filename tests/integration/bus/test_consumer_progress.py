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
from tests.conftest import Servers


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
