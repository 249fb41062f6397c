"""The rigs integration tests run against, in one place.

`Rig` is one test's own corner of the shared servers: settings with a stream and subject
prefix of its own, the pool, a JetStream context, the command service and the background
tasks it started (a relay at least), all undone on close. `SagaRig`, `NotifierRig` and
`BillingRig` add what their consumer needs; `NovaKeystoneRig` is the notifier's Nova client
in front of a fake Keystone and a fake Nova (no servers at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from cinderblock.billing.run import notification_stream
from cinderblock.billing.run import run as run_billing
from cinderblock.bus.jetstream import ensure_consumer, ensure_stream, run_consumer
from cinderblock.config.settings import Settings
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.drivers.base import PoolConfig
from cinderblock.drivers.file import FileDriver
from cinderblock.identity.keystone import service_tokens
from cinderblock.notifier.nova import NovaClient, NovaConfig
from cinderblock.notifier.run import NotifierRunner, consumer_spec
from cinderblock.projector.run import Projector
from cinderblock.readmodels.waiter import ProjectionWaiter
from cinderblock.relay.run import Relay
from cinderblock.runtime.infra import create_schemas
from cinderblock.runtime.outage import database_unavailable
from cinderblock.runtime.streams import stream_spec
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.volumes import Caller, Volumes
from tests.helpers.fake_keystone import FakeKeystone, fake_keystone
from tests.helpers.fake_nova import FakeNova
from tests.helpers.servers import Servers, fresh_database, make_settings

NOVA_NOTIFIED = "cinderblock.domain.volume:Volume.NovaNotified"


async def stop_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for each; whatever they raise is theirs."""
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@dataclass
class Rig:
    settings: Settings
    pool: asyncpg.Pool
    js: JetStreamContext
    volumes: Volumes
    tasks: list[asyncio.Task[Any]]

    @property
    def store(self) -> AsyncEventStore:
        return self.volumes.store

    def start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
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


@contextlib.asynccontextmanager
async def own_stream(
    settings: Settings, letter: str, **update: Any
) -> AsyncIterator[tuple[Settings, Client, JetStreamContext]]:
    """``settings`` with a stream (``<stream>_<letter><tag>``) and subject prefix of their
    own (and ``update``), connected, the stream made; deleted again on the way out."""
    tag = uuid.uuid4().hex[:8]
    own = settings.model_copy(
        update={
            "stream": f"{settings.stream}_{letter}{tag}",
            "subject_prefix": f"{letter.lower()}{tag}.",
            **update,
        }
    )
    nc = await nats.connect(own.nats_url)
    js = nc.jetstream()
    await ensure_stream(js, stream_spec(own))
    try:
        yield own, nc, js
    finally:
        await js.delete_stream(own.stream)
        await nc.close()


# ---------------------------------------------------------------- sagas


@dataclass
class SagaRig(Rig):
    files: FileDriver

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
async def open_saga_rig(
    pool: asyncpg.Pool,
    settings: Settings,
    root: Path,
    pools: tuple[str, ...] = ("h@file#pool:100",),
    ack_wait: float = 1.0,
) -> AsyncIterator[SagaRig]:
    """A stream, subject prefix and relay of its own, a file driver on ``pools`` under
    ``root`` (the image store too), and quick redelivery (``ack_wait``, 3 deliveries)."""
    update = {"saga_ack_wait": ack_wait, "saga_max_deliver": 3, "data_dir": root, "pools": pools}
    async with own_stream(settings, "S", **update) as (own, _, js):
        files = FileDriver(root, [PoolConfig.parse(p) for p in pools])
        r = SagaRig(own, pool, js, Volumes(AsyncEventStore(pool)), [], files)
        stop = asyncio.Event()
        r.start(Relay(own, pool, js).follow(stop))
        try:
            yield r
        finally:
            stop.set()
            await stop_tasks(r.tasks)


# ---------------------------------------------------------------- nova notifier


@dataclass
class NotifierRig(Rig):
    waiter: ProjectionWaiter
    session: aiohttp.ClientSession
    nova: FakeNova

    def runner(self) -> NotifierRunner:
        client = NovaClient(self.session, NovaConfig.of(self.settings))
        return NotifierRunner(self.settings, self.pool, self.waiter, client)

    def consume(self, runner: NotifierRunner, handle: Callable[[Msg], Awaitable[None]]) -> Any:
        """A consumer as the notifier service runs it (database outages waited out)."""
        task = asyncio.create_task(
            run_consumer(
                self.js,
                runner.spec,
                handle,
                runner.park,
                asyncio.Event(),
                outage=database_unavailable,
            )
        )
        self.tasks.append(task)
        return task

    async def extended_in_use_volume(self) -> tuple[str, str]:
        """A volume attached to one instance whose extend to 2 GiB just completed (as the
        extend saga records it). Returns (volume id, instance uuid)."""
        vid, caller = await self.creating_volume()
        server = str(uuid.uuid4())
        await self.volumes.complete_create(str(vid), "h@file#pool", meta={})

        def attach(v: Volume) -> None:
            attachment = str(uuid.uuid4())
            v.attach(
                attachment, mountpoint="/dev/vdb", mode="rw", instance_uuid=server, host_name=None
            )

        await self.volumes.act(caller, str(vid), attach, meta={})
        await self.volumes.extend_volume(
            caller, str(vid), 2, in_use_allowed=True, reservation_id="r", meta={}
        )
        volume = await self.volumes.store.load(vid, Volume)
        assert volume is not None
        at = volume.version
        meta = {"actor": "saga:extend", "causation_id": f"{vid}:{at}", "request_id": "req-1"}
        assert await self.volumes.complete_extend(str(vid), at, meta=meta)
        return str(vid), server

    async def outcomes(self, volume_id: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT originator_version FROM events WHERE originator_id = $1 AND topic = $2",
            uuid.UUID(volume_id),
            NOVA_NOTIFIED,
        )

    async def until_recorded(self, volume_id: str) -> None:
        for _ in range(1500):
            if await self.outcomes(volume_id):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"no NovaNotified on {volume_id}")

    async def stop(self, task: asyncio.Task[Any]) -> None:
        """The worker dies: its unacked message goes back to JetStream after ack_wait."""
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def open_notifier_rig(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[NotifierRig]:
    """A stream of its own with the notifier's consumer made before anything is published,
    a relay and a projector of its own (a projection name of its own), a fake Nova."""
    nova = FakeNova()
    update = {
        "saga_ack_wait": 1.0,
        "saga_max_deliver": 3,
        "read_wait": 1.0,
        "nova_url": await nova.start(),
        "nova_timeout": 0.5,
        "nova_attempts": 2,
        "nova_backoff": 0.05,
    }
    try:
        async with own_stream(settings, "N", **update) as (own, _, js):
            await ensure_consumer(js, consumer_spec(own))  # before anything it must see
            projection = f"test-{own.subject_prefix.rstrip('.')}"
            waiter = ProjectionWaiter(pool, projection)
            await waiter.start()
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(Relay(own, pool, js).follow(stop)),
                asyncio.create_task(Projector(pool, name=projection).follow(stop)),
            ]
            try:
                async with aiohttp.ClientSession() as session:
                    volumes = Volumes(AsyncEventStore(pool))
                    r = NotifierRig(own, pool, js, volumes, tasks, waiter, session, nova)
                    try:
                        yield r
                    finally:
                        stop.set()
                        await stop_tasks(r.tasks)
            finally:
                await waiter.stop()
    finally:
        await nova.stop()


# ---------------------------------------------------------------- billing


@dataclass
class BillingRig(Rig):
    nc: Client
    notes: asyncio.Queue[dict[str, Any]]


@contextlib.asynccontextmanager
async def open_billing_rig(servers: Servers, data_dir: Path) -> AsyncIterator[BillingRig]:
    """A database of its own, the event and notification streams, a relay and the billing
    service, and every notification the service publishes in ``notes``."""
    tag = uuid.uuid4().hex[:8]
    async with fresh_database(servers) as url:
        settings = make_settings(url, servers.nats_url, f"B{tag}", data_dir)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=6)
        await create_schemas(pool)
        nc = await nats.connect(servers.nats_url)
        js = nc.jetstream()
        await ensure_stream(js, stream_spec(settings))
        await ensure_stream(js, notification_stream(settings))
        notes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_note(msg: Any) -> None:
            await notes.put(json.loads(msg.data))

        await nc.subscribe(settings.subject("notifications.>"), cb=on_note)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(Relay(settings, pool, js).follow(stop)),
            asyncio.create_task(run_billing(settings, stop=stop)),
        ]
        try:
            volumes = Volumes(AsyncEventStore(pool))
            yield BillingRig(settings, pool, js, volumes, tasks, nc, notes)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            for name in (settings.stream, notification_stream(settings).name):
                with contextlib.suppress(Exception):
                    await js.delete_stream(name)
            await nc.close()
            await pool.close()


# ---------------------------------------------------------------- Nova behind Keystone


@dataclass
class NovaKeystoneRig:
    keystone: FakeKeystone
    nova: FakeNova
    client: NovaClient


async def _no_sleep(_: float) -> None:
    return None


@contextlib.asynccontextmanager
async def open_nova_keystone_rig() -> AsyncIterator[NovaKeystoneRig]:
    """The notifier's Nova client with Keystone credentials (service user
    ``nova-notifier``), three attempts and no back-off, in front of the fakes."""
    nova = FakeNova()
    async with fake_keystone() as keystone, aiohttp.ClientSession() as session:
        url = await nova.start()
        keystone.users["nova-notifier"] = ("pw", "service", ["admin", "service"])
        nova.token_ok = lambda token: token in keystone.tokens
        settings = Settings(
            nova_url=url,
            keystone_auth_url=keystone.url,
            keystone_username="nova-notifier",
            keystone_password="pw",
        )
        tokens = service_tokens(settings, session)
        assert tokens is not None
        client = NovaClient(
            session,
            NovaConfig(url, attempts=3, backoff=0.0),
            sleep=_no_sleep,
            tokens=tokens,
        )
        try:
            yield NovaKeystoneRig(keystone, nova, client)
        finally:
            await nova.stop()
