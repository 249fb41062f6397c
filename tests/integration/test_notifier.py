"""The Nova notifier over real JetStream and PostgreSQL, killed at the worst moments: Nova
hears of an extend once when the outcome was saved before the crash, once when the crash
came before the call, and twice (the documented window) when the crash came between Nova's
answer and the saving of the outcome. A save that fails because the database is away is
tried again without telling Nova twice."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio
from nats.aio.msg import Msg

from cinderblock.config.settings import Settings
from cinderblock.domain.volume import Volume
from cinderblock.notifier.run import NotifierRunner
from cinderblock.wire.envelope import ReceivedEnvelope
from tests.helpers.rigs import NOVA_NOTIFIED, NotifierRig, open_notifier_rig


@pytest_asyncio.fixture
async def rig(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[NotifierRig]:
    async with open_notifier_rig(pool, settings) as r:
        yield r


def about(volume_id: str, msg: Msg) -> bool:
    """The message is the volume's Extended (a NATS server older than 2.10 ignores the
    consumer's filter subjects and delivers every event; the notifier skips the others)."""
    env = ReceivedEnvelope.model_validate_json(msg.data)
    return env.aggregate_id == volume_id and env.type == "volume.extended"


class Redelivered:
    """Handles as the runner does and marks when the volume's message came again."""

    def __init__(self, runner: NotifierRunner, volume_id: str) -> None:
        self.runner = runner
        self.volume_id = volume_id
        self.done = asyncio.Event()

    async def handle(self, msg: Msg) -> None:
        await self.runner.handle(msg)
        if about(self.volume_id, msg) and msg.metadata.num_delivered >= 2:
            self.done.set()


async def test_crash_after_the_outcome_was_saved_calls_nova_once(rig: NotifierRig) -> None:
    vid, server = await rig.extended_in_use_volume()
    first = rig.runner()
    saved = asyncio.Event()

    async def dies_before_ack(msg: Msg) -> None:
        await first.handle(msg)
        if about(vid, msg):
            saved.set()
            await asyncio.Event().wait()  # killed here: the outcome is saved, not acked

    worker = rig.consume(first, dies_before_ack)
    await asyncio.wait_for(saved.wait(), 20)
    await rig.stop(worker)
    assert len(rig.nova.requests_for(vid)) == 1
    assert len(await rig.outcomes(vid)) == 1

    second = Redelivered(rig.runner(), vid)
    rig.consume(second.runner, second.handle)
    await asyncio.wait_for(second.done.wait(), 20)
    [request] = rig.nova.requests_for(vid)  # the redelivery found the outcome: no call
    assert request.body["events"] == [
        {"name": "volume-extended", "server_uuid": server, "tag": vid}
    ]
    assert len(await rig.outcomes(vid)) == 1


async def test_crash_before_the_call_calls_nova_once_on_redelivery(rig: NotifierRig) -> None:
    vid, _ = await rig.extended_in_use_volume()
    first = rig.runner()
    reached = asyncio.Event()
    real = first.notifier.nova.volume_extended

    async def dies_before_sending(volume_id: str, *args: Any, **kw: Any) -> Any:
        if volume_id == vid:
            reached.set()
            await asyncio.Event().wait()  # killed here: nothing sent yet
        return await real(volume_id, *args, **kw)

    first.notifier.nova.volume_extended = dies_before_sending  # type: ignore[method-assign]
    worker = rig.consume(first, first.handle)
    await asyncio.wait_for(reached.wait(), 20)
    await rig.stop(worker)
    assert rig.nova.requests_for(vid) == []

    second = Redelivered(rig.runner(), vid)
    rig.consume(second.runner, second.handle)
    await asyncio.wait_for(second.done.wait(), 20)
    await rig.until_recorded(vid)
    assert len(rig.nova.requests_for(vid)) == 1
    assert len(await rig.outcomes(vid)) == 1


async def test_crash_between_novas_answer_and_the_save_is_the_one_duplicate(
    rig: NotifierRig,
) -> None:
    """The documented window: Nova hears twice, the volume records one outcome."""
    vid, _ = await rig.extended_in_use_volume()
    first = rig.runner()
    answered = asyncio.Event()
    record = first.notifier._record

    async def dies_before_saving(env: ReceivedEnvelope, *args: Any) -> None:
        if env.aggregate_id == vid and env.type == "volume.extended":
            answered.set()
            await asyncio.Event().wait()  # killed here: Nova answered, nothing saved
        await record(env, *args)

    first.notifier._record = dies_before_saving  # type: ignore[method-assign]
    worker = rig.consume(first, first.handle)
    await asyncio.wait_for(answered.wait(), 20)
    await rig.stop(worker)
    assert len(rig.nova.requests_for(vid)) == 1
    assert await rig.outcomes(vid) == []

    second = Redelivered(rig.runner(), vid)
    rig.consume(second.runner, second.handle)
    await asyncio.wait_for(second.done.wait(), 20)
    assert len(rig.nova.requests_for(vid)) == 2
    assert len(await rig.outcomes(vid)) == 1


async def test_a_save_refused_by_a_database_outage_does_not_tell_nova_twice(
    rig: NotifierRig,
) -> None:
    """Nova answered, then the database refused the save (a real asyncpg connection
    refused, twice): the notifier saves Nova's answer once the database answers, in the
    same delivery, and Nova heard once. (The chaos suite's PostgreSQL kill once saw Nova
    told twice: the failed save was redelivered and the redelivery called Nova again.)"""
    vid, _ = await rig.extended_in_use_volume()
    runner = rig.runner()
    record = runner.notifier._record
    refusals = 2

    async def database_away_at_first(env: ReceivedEnvelope, *args: Any) -> None:
        nonlocal refusals
        if env.aggregate_id == vid and refusals > 0:
            refusals -= 1
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            await asyncpg.connect(f"postgresql://nobody@127.0.0.1:{port}/none", timeout=2)
        await record(env, *args)

    runner.notifier._record = database_away_at_first  # type: ignore[method-assign]
    delivered: list[int] = []

    async def handle(msg: Msg) -> None:
        if about(vid, msg):
            delivered.append(msg.metadata.num_delivered)
        await runner.handle(msg)

    rig.consume(runner, handle)
    await rig.until_recorded(vid)
    assert refusals == 0
    assert len(rig.nova.requests_for(vid)) == 1
    assert len(await rig.outcomes(vid)) == 1
    assert set(delivered) == {1}  # waited out in the first delivery


async def test_read_model_that_never_shows_the_extend_ends_in_a_recorded_failure(
    rig: NotifierRig,
) -> None:
    """Deliveries used up before Nova could be asked: nothing is sent, the failure is on the
    volume and the message is parked."""
    await rig.stop(rig.tasks[1])  # the projector: the read model stays behind
    vid, server = await rig.extended_in_use_volume()
    runner = rig.runner()
    rig.consume(runner, runner.handle)
    await rig.until_recorded(vid)
    assert rig.nova.requests_for(vid) == []
    volume = await rig.volumes.store.load(uuid.UUID(vid), Volume)
    assert volume is not None
    assert volume.size_gb == 2  # the extend stands
    row = await rig.pool.fetchrow(
        "SELECT state, meta::text AS meta FROM events WHERE originator_id = $1 AND topic = $2",
        uuid.UUID(vid),
        NOVA_NOTIFIED,
    )
    event, meta = json.loads(row["state"]), json.loads(row["meta"])
    assert event["outcome"] == "failed"
    assert event["attempts"] == 0
    assert event["events"] == [{"server_uuid": server, "code": None, "result": "not_sent"}]
    assert "read model" in event["reason"]
    assert meta["causation_id"] == f"{vid}:{event['extend_version']}"
    for _ in range(500):  # the dead letter is written right after the outcome
        parked = await rig.pool.fetchval(
            "SELECT deliveries FROM dead_letters WHERE consumer = $1 AND msg_id = $2",
            runner.spec.durable,
            f"{vid}:{event['extend_version']}",
        )
        if parked is not None:
            break
        await asyncio.sleep(0.01)
    assert parked == rig.settings.saga_max_deliver
