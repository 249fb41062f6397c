"""A poison message does not stop a consumer nor other volumes' messages: one whose
handler keeps failing for a reason no retry fixes quarantines its volume (later messages of
that volume are set aside unhandled, everything else flows, in batches too); an undecodable
message is parked at once; one that failed for a reason of the moment is parked only."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import nats
import nats.js.errors
import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from cinderblock.bus import jetstream
from cinderblock.bus.jetstream import ConsumerSpec, StreamSpec, ensure_stream, run_consumer
from cinderblock.runtime.infra import create_schemas
from cinderblock.wire.envelope import EventEnvelope, ReceivedEnvelope
from tests.helpers.quarantine import Wakes, WatchedQuarantine
from tests.helpers.servers import Servers, fresh_database


@pytest_asyncio.fixture(loop_scope="session")
async def pool(servers: Servers) -> AsyncIterator[asyncpg.Pool]:
    async with fresh_database(servers) as dsn:
        p = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        await create_schemas(p)
        yield p
        await p.close()


def envelope(volume: uuid.UUID, version: int) -> bytes:
    return (
        EventEnvelope(
            id=f"{volume}:{version}",
            type="volume.bootable_set",
            aggregate="volume",
            aggregate_id=str(volume),
            version=version,
            position=version,
            occurred_at=datetime.now(UTC),
            data={"bootable": True},
        )
        .model_dump_json()
        .encode()
    )


async def test_a_poison_volume_is_set_aside_and_the_rest_flows(
    servers: Servers, pool: asyncpg.Pool
) -> None:
    name = f"CBT_POISON_{uuid.uuid4().hex[:8].upper()}"
    subject = f"cbt.poison.{uuid.uuid4().hex[:8]}"
    poison, flaky, good = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    handled: list[tuple[uuid.UUID, int]] = []
    parked: list[str] = []
    wake = Wakes()

    async def handler(msg: Msg) -> None:
        env = ReceivedEnvelope.model_validate_json(msg.data)
        key = (uuid.UUID(env.aggregate_id), env.version)
        handled.append(key)
        wake()
        if key[0] == poison:
            raise KeyError("bootable")  # what the same message hits every time
        if key == (flaky, 1):
            raise ConnectionError("the database went away")  # of the moment

    async def park(msg: Msg, reason: str) -> None:
        parked.append(reason)
        wake()

    class Hooks:
        async def before(self, msgs: list[Msg]) -> None:
            pass

        async def after(self) -> None:
            pass

    consumer = "poison-test"
    gate = WatchedQuarantine(pool, consumer, wake)
    spec = ConsumerSpec(
        name, consumer, [f"{subject}.>"], ack_wait=5.0, max_deliver=2, workers=1, batch=16
    )
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream()
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        await ensure_stream(js, StreamSpec(name, [f"{subject}.>"]))
        for volume, version in ((poison, 1), (good, 1), (flaky, 1), (good, 2)):
            await js.publish(f"{subject}.{volume}", envelope(volume, version))
        await js.publish(f"{subject}.garbage", b"\x00 not an envelope")
        task = asyncio.create_task(run_consumer(js, spec, handler, park, stop, Hooks(), gate))

        async def poison_quarantined() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT count(*) FROM quarantine WHERE consumer = $1 AND aggregate_id = $2",
                    consumer,
                    poison,
                )
            )

        await wake.until(poison_quarantined)
        await wake.until(lambda: _true((flaky, 1) in handled and len(parked) == 2))
        # The volume's later messages are set aside without being handled; others flow.
        for volume, version in ((poison, 2), (good, 3), (flaky, 2)):
            await js.publish(f"{subject}.{volume}", envelope(volume, version))
        await wake.until(lambda: _true({(good, 3), (flaky, 2)} <= set(handled)))
        rows = await wake.until(
            lambda: pool.fetch(
                "SELECT version, held, error FROM quarantine "
                "WHERE consumer = $1 AND aggregate_id = $2 AND held",
                consumer,
                poison,
            )
        )
        stop.set()
        await asyncio.wait_for(task, 10)  # the workers ack what they hold, then return
        info = await js.consumer_info(name, consumer)
    finally:
        stop.set()
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
        await nc.close()

    assert [k for k in handled if k[0] == poison] == [(poison, 1), (poison, 1)]  # never v2
    assert [(r["version"], r["held"]) for r in rows] == [(2, True)]
    failed = await pool.fetchrow(
        "SELECT version, error FROM quarantine WHERE consumer = $1 AND NOT held", consumer
    )
    assert (failed["version"], failed["error"]) == (1, "KeyError: 'bootable'")
    # Parked: the poison message and the one whose last failure was of the moment (its
    # volume is not quarantined: its next message was handled); the garbage at once.
    assert sorted(parked) == ["ConnectionError: the database went away", "KeyError: 'bootable'"]
    letters = await pool.fetch(
        "SELECT subject, deliveries FROM dead_letters WHERE consumer = $1", consumer
    )
    assert [(r["subject"], r["deliveries"]) for r in letters] == [(f"{subject}.garbage", 1)]
    assert info.num_ack_pending == 0


async def _true(value: bool) -> bool:
    return value


async def test_a_park_that_fails_does_not_end_the_consumer(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a gate (the sagas): a message no handler nor park can read used to end the
    worker when park raised, and with it the consumer; now it is logged and dropped."""
    monkeypatch.setattr(jetstream, "_PARK_RETRIES", (0.01, 0.01))
    name = f"CBT_PARKFAIL_{uuid.uuid4().hex[:8].upper()}"
    subject = f"cbt.parkfail.{uuid.uuid4().hex[:8]}"
    handled: list[int] = []
    parks: list[str] = []
    wake = Wakes()

    async def handler(msg: Msg) -> None:
        env = ReceivedEnvelope.model_validate_json(msg.data)  # raises on the garbage
        handled.append(env.version)
        wake()

    async def park(msg: Msg, reason: str) -> None:
        parks.append(reason)
        wake()
        ReceivedEnvelope.model_validate_json(msg.data)  # as the sagas' park does

    spec = ConsumerSpec(name, "parkfail", [f"{subject}.>"], ack_wait=5.0, max_deliver=1, workers=1)
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream()
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        await ensure_stream(js, StreamSpec(name, [f"{subject}.>"]))
        await js.publish(f"{subject}.garbage", b"not an envelope")
        task = asyncio.create_task(run_consumer(js, spec, handler, park, stop))
        await wake.until(lambda: _true(len(parks) == 3))  # the first try and two retries
        await js.publish(f"{subject}.next", envelope(uuid.uuid4(), 7))
        await wake.until(lambda: _true(handled == [7]))
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        stop.set()
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
        await nc.close()
