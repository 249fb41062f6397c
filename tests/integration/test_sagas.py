"""Sagas over real JetStream: a worker killed between the driver step and the completion
event is redelivered and finishes once in effect; a message that keeps failing is parked
and compensated, never left in a transient status."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

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


@pytest_asyncio.fixture
async def rig(pool: asyncpg.Pool, settings: Settings, tmp_path: Path) -> AsyncIterator[Rig]:
    tag = uuid.uuid4().hex[:8]
    own = settings.model_copy(
        update={
            "stream": f"{settings.stream}_S{tag}",
            "subject_prefix": f"s{tag}.",
            "saga_ack_wait": 1.0,
            "saga_max_deliver": 3,
        }
    )
    nc = await nats.connect(own.nats_url)
    js = nc.jetstream()
    await ensure_stream(js, stream_spec(own))
    files = FileDriver(tmp_path, [PoolConfig.parse("h@file#pool:100")])
    r = Rig(own, js, Volumes(AsyncEventStore(pool)), files, [])
    stop = asyncio.Event()
    r.start(Relay(own, pool, js).follow(stop))
    yield r
    stop.set()
    for task in r.tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await js.delete_stream(own.stream)
    await nc.close()


class DiesAfterExtend:
    """The file driver, but the worker 'dies' right after the backend grew the file of the
    volume under test."""

    def __init__(self, inner: FileDriver, volume_id: uuid.UUID) -> None:
        self.inner = inner
        self.volume_id = str(volume_id)
        self.grown = asyncio.Event()

    async def extend_volume(
        self, volume_id: str, location: str, new_size_gb: int, *, step_key: str
    ) -> None:
        await self.inner.extend_volume(volume_id, location, new_size_gb, step_key=step_key)
        if volume_id == self.volume_id:
            self.grown.set()
            await asyncio.Event().wait()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


class Counting:
    """Counts (and optionally fails) the extends of the volume under test. The database is
    shared with other tests, whose events this stream carries too."""

    def __init__(
        self, inner: FileDriver, volume_id: uuid.UUID, failure: Exception | None = None
    ) -> None:
        self.inner = inner
        self.volume_id = str(volume_id)
        self.extends = 0
        self.failure = failure

    async def extend_volume(
        self, volume_id: str, location: str, new_size_gb: int, *, step_key: str
    ) -> None:
        if volume_id == self.volume_id:
            self.extends += 1
            if self.failure is not None:
                raise self.failure
        await self.inner.extend_volume(volume_id, location, new_size_gb, step_key=step_key)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


async def test_worker_killed_after_driver_step_is_finished_by_redelivery(
    rig: Rig, pool: asyncpg.Pool
) -> None:
    volume = await rig.extending_volume()
    dying = DiesAfterExtend(rig.files, volume.id)
    first = SagaRunner(rig.settings, pool, dying)  # type: ignore[arg-type]
    stop = asyncio.Event()
    worker = rig.start(run_consumer(rig.js, first.spec, first.handle, first.park, stop))
    await asyncio.wait_for(dying.grown.wait(), 15)
    worker.cancel()  # killed between the driver step and the completion event
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    path = rig.files.volume_path(str(volume.id), volume.host or "")
    assert path.stat().st_size == 2 * GIB
    still = await AsyncEventStore(pool).load(volume.id, Volume)
    assert still is not None
    assert still.status == Status.EXTENDING

    counting = Counting(rig.files, volume.id)
    second = SagaRunner(rig.settings, pool, counting)  # type: ignore[arg-type]
    rig.start(run_consumer(rig.js, second.spec, second.handle, second.park, asyncio.Event()))
    done = await rig.until_settled(volume)
    assert (done.status, done.size_gb) == (Status.AVAILABLE, 2)
    assert counting.extends == 1  # redelivered once; growing to 2 GiB again changed nothing
    assert path.stat().st_size == 2 * GIB
    topics = [
        r["topic"].rpartition(".")[2]
        for r in await pool.fetch(
            "SELECT topic FROM events WHERE originator_id = $1 ORDER BY originator_version",
            volume.id,
        )
    ]
    assert topics == ["Created", "CreateCompleted", "ExtendRequested", "Extended"]


async def test_poison_message_is_parked_and_compensated(rig: Rig, pool: asyncpg.Pool) -> None:
    volume = await rig.extending_volume()
    broken = Counting(rig.files, volume.id, failure=RuntimeError("controller unreachable"))
    runner = SagaRunner(rig.settings, pool, broken)  # type: ignore[arg-type]
    rig.start(run_consumer(rig.js, runner.spec, runner.handle, runner.park, asyncio.Event()))
    done = await rig.until_settled(volume)
    assert (done.status, done.size_gb) == (Status.ERROR_EXTENDING, 1)
    assert broken.extends == rig.settings.saga_max_deliver
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
