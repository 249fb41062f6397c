"""Sagas over real JetStream: the rig (a stream and relay of its own, a file driver) and the
driver wrappers the saga tests share; a message that keeps failing is parked and
compensated, never left in a transient status. A worker killed between the driver step and
the completion event, saga by saga: test_saga_crashes.py."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest_asyncio
from nats.js import JetStreamContext

from cinderblock.bus.jetstream import ensure_stream, run_consumer
from cinderblock.config.settings import Settings
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.drivers.base import PoolConfig
from cinderblock.drivers.file import FileDriver
from cinderblock.relay.run import Relay
from cinderblock.runtime.streams import stream_spec
from cinderblock.sagas.run import SagaRunner
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.volumes import Caller, Volumes

GIB = 2**30


@dataclass
class Rig:
    settings: Settings
    js: JetStreamContext
    volumes: Volumes
    files: FileDriver
    tasks: list[asyncio.Task[None]]

    def start(self, coro) -> asyncio.Task[None]:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self.tasks.append(task)
        return task

    async def creating_volume(self) -> tuple[uuid.UUID, Caller]:
        """A 1 GiB volume in ``creating``, in a project of its own."""
        vid = uuid.uuid4()
        caller = Caller("u", uuid.uuid4().hex)
        await self.volumes.create_volume(
            caller,
            vid,
            meta={},
            name=None,
            description=None,
            size_gb=1,
            metadata={},
            bootable=False,
            multiattach=False,
        )
        return vid, caller

    async def extending_volume(self) -> Volume:
        """An available volume on a real file, with an extend to 2 GiB requested."""
        vid, caller = await self.creating_volume()
        host = await self.files.create_volume(str(vid), 1, location=None, step_key="c")
        await self.volumes.complete_create(str(vid), host, meta={})
        await self.volumes.extend_volume(
            caller,
            str(vid),
            2,
            in_use_allowed=False,
            reservation_id="r",
            meta={"request_id": "req-x"},
        )
        volume = await self.volumes.store.load(vid, Volume)
        assert volume is not None
        return volume

    async def until_settled(self, volume: Volume) -> Volume:
        for _ in range(2000):
            current = await AsyncEventStore(self.volumes.store.pool).load(volume.id, Volume)
            if current is not None and current.status != Status.EXTENDING:
                return current
            await asyncio.sleep(0.01)
        raise AssertionError(f"volume {volume.id} still extending")


@contextlib.asynccontextmanager
async def open_rig(
    pool: asyncpg.Pool,
    settings: Settings,
    root: Path,
    pools: tuple[str, ...] = ("h@file#pool:100",),
    ack_wait: float = 1.0,
) -> AsyncIterator[Rig]:
    """A stream, subject prefix and relay of its own, a file driver on ``pools`` under
    ``root`` (the image store too), and quick redelivery (``ack_wait``, 3 deliveries)."""
    tag = uuid.uuid4().hex[:8]
    own = settings.model_copy(
        update={
            "stream": f"{settings.stream}_S{tag}",
            "subject_prefix": f"s{tag}.",
            "saga_ack_wait": ack_wait,
            "saga_max_deliver": 3,
            "data_dir": root,
            "pools": pools,
        }
    )
    nc = await nats.connect(own.nats_url)
    js = nc.jetstream()
    await ensure_stream(js, stream_spec(own))
    files = FileDriver(root, [PoolConfig.parse(p) for p in pools])
    r = Rig(own, js, Volumes(AsyncEventStore(pool)), files, [])
    stop = asyncio.Event()
    r.start(Relay(own, pool, js).follow(stop))
    try:
        yield r
    finally:
        stop.set()
        for task in r.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await js.delete_stream(own.stream)
        await nc.close()


@pytest_asyncio.fixture
async def rig(pool: asyncpg.Pool, settings: Settings, tmp_path: Path) -> AsyncIterator[Rig]:
    async with open_rig(pool, settings, tmp_path) as r:
        yield r


class DiesAfter:
    """A driver (or image service) whose worker 'dies' right after ``step`` did its work
    for ``subject`` (the step's first argument: a volume, snapshot or image id): the call
    never returns, so the completion event is never recorded and the message never acked.
    Other subjects pass through (the stream carries other tests' events too)."""

    def __init__(self, inner: Any, step: str, subject: str) -> None:
        self.inner = inner
        self.step = step
        self.subject = str(subject)
        self.calls = 0
        self.done = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.step:
            return attr

        async def step(*args: Any, **kwargs: Any) -> Any:
            result = await attr(*args, **kwargs)
            if str(args[0]) == self.subject:
                self.calls += 1
                self.done.set()
                await asyncio.Event().wait()
            return result

        return step


class Counting:
    """Counts (and optionally fails) the ``step`` calls for ``subject``."""

    def __init__(
        self, inner: Any, step: str, subject: str, failure: Exception | None = None
    ) -> None:
        self.inner = inner
        self.step = step
        self.subject = str(subject)
        self.calls = 0
        self.failure = failure

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.step:
            return attr

        async def step(*args: Any, **kwargs: Any) -> Any:
            if str(args[0]) == self.subject:
                self.calls += 1
                if self.failure is not None:
                    raise self.failure
            return await attr(*args, **kwargs)

        return step


async def test_poison_message_is_parked_and_compensated(rig: Rig, pool: asyncpg.Pool) -> None:
    volume = await rig.extending_volume()
    broken = Counting(
        rig.files, "extend_volume", volume.id, failure=RuntimeError("controller unreachable")
    )
    runner = SagaRunner(rig.settings, pool, broken)  # type: ignore[arg-type]
    rig.start(run_consumer(rig.js, runner.spec, runner.handle, runner.park, asyncio.Event()))
    done = await rig.until_settled(volume)
    assert (done.status, done.size_gb) == (Status.ERROR_EXTENDING, 1)
    assert broken.calls == rig.settings.saga_max_deliver
    parked = None
    for _ in range(500):  # compensation is recorded first, the dead letter right after
        parked = await pool.fetchrow(
            "SELECT consumer, deliveries, error FROM dead_letters WHERE msg_id = $1",
            f"{volume.id}:3",
        )
        if parked is not None:
            break
        await asyncio.sleep(0.01)
    assert parked is not None
    assert parked["deliveries"] == rig.settings.saga_max_deliver
    assert "controller unreachable" in parked["error"]


class GatedCreate:
    """The file driver, with create held until the test lets it finish."""

    def __init__(self, inner: FileDriver) -> None:
        self.inner = inner
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def create_volume(
        self, volume_id: str, size_gb: int, *, location: str | None, step_key: str
    ) -> str:
        host = await self.inner.create_volume(
            volume_id, size_gb, location=location, step_key=step_key
        )
        self.started.set()
        await self.release.wait()
        return host

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


async def test_delete_racing_create_leaves_no_orphan_file(rig: Rig, pool: asyncpg.Pool) -> None:
    from cinderblock.sagas.consumers import Sagas
    from cinderblock.wire.envelope import ReceivedEnvelope

    vid, caller = await rig.creating_volume()
    gated = GatedCreate(rig.files)
    sagas = Sagas(Volumes(AsyncEventStore(pool)), gated)  # type: ignore[arg-type]
    env = ReceivedEnvelope(
        id=f"{vid}:1",
        type="volume.created",
        aggregate="volume",
        aggregate_id=str(vid),
        version=1,
        position=1,
        occurred_at="2026-01-01T00:00:00Z",
    )
    reaction = asyncio.create_task(sagas.when_created_place_and_create(env))
    await asyncio.wait_for(gated.started.wait(), 10)
    assert list(rig.files.root.glob(f"*/*/volume-{vid}.img"))  # the store exists now
    await rig.volumes.delete_volume(caller, str(vid), meta={})  # never placed: gone at once
    gated.release.set()
    await asyncio.wait_for(reaction, 10)
    assert not list(rig.files.root.glob(f"*/*/volume-{vid}.img"))
    volume = await AsyncEventStore(pool).load(vid, Volume)
    assert volume is not None
    assert volume.is_deleted
