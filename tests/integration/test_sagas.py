"""Sagas over real JetStream (the rig: tests/helpers/rigs.py; the driver wrappers:
tests/helpers/driver_wrappers.py): a message that keeps failing is parked and
compensated, never left in a transient status. A worker killed between the driver step and
the completion event, saga by saga: test_saga_crashes.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest_asyncio

from cinderblock.bus.jetstream import run_consumer
from cinderblock.config.settings import Settings
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.drivers.file import FileDriver
from cinderblock.sagas.run import SagaRunner
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.volumes import Volumes
from tests.helpers.driver_wrappers import Counting
from tests.helpers.rigs import SagaRig, open_saga_rig


@pytest_asyncio.fixture
async def rig(pool: asyncpg.Pool, settings: Settings, tmp_path: Path) -> AsyncIterator[SagaRig]:
    async with open_saga_rig(pool, settings, tmp_path) as r:
        yield r


async def test_poison_message_is_parked_and_compensated(rig: SagaRig, pool: asyncpg.Pool) -> None:
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


async def test_delete_racing_create_leaves_no_orphan_file(rig: SagaRig, pool: asyncpg.Pool) -> None:
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
