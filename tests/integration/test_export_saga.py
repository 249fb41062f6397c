"""The export saga over real PostgreSQL and JetStream (its crashes: the attach and detach
cases of test_saga_crashes.py): a backend failure compensates at once, a failure that keeps
coming gives up after the last delivery, and an export made for an attachment deleted
meanwhile is removed again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest_asyncio

from cinderblock.bus.jetstream import run_consumer
from cinderblock.config.settings import Settings
from cinderblock.domain import exports
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.drivers.base import ExportSpec
from cinderblock.drivers.faults import FaultInjectingDriver, FaultPlan
from cinderblock.drivers.file import FileDriver
from cinderblock.sagas.exports import ExportSaga
from cinderblock.sagas.run import SagaRunner
from cinderblock.store.volumes import Caller
from cinderblock.wire.envelope import ReceivedEnvelope
from tests.helpers.driver_wrappers import Counting
from tests.helpers.rigs import SagaRig, open_saga_rig

CONNECTOR = {"host": "compute-1", "mountpoint": "/dev/vdb"}


@pytest_asyncio.fixture
async def rig(pool: asyncpg.Pool, settings: Settings, tmp_path: Path) -> AsyncIterator[SagaRig]:
    async with open_saga_rig(pool, settings, tmp_path) as r:
        yield r


async def load(rig: SagaRig, vid: str) -> Volume:
    volume = await rig.volumes.store.load(uuid.UUID(vid), Volume)
    assert volume is not None
    return volume


async def topics(pool: asyncpg.Pool, vid: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT topic FROM events WHERE originator_id = $1 ORDER BY originator_version",
        uuid.UUID(vid),
    )
    return [r["topic"].rpartition(".")[2] for r in rows]


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 15
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached in 15 s: {what}")
        await asyncio.sleep(0.02)


async def requested(rig: SagaRig, *, reserved: bool) -> tuple[str, Caller, str, str, int]:
    """An available volume on a real file whose attachment's connector arrived (with the
    reservation in the same request when ``reserved``, as POST /attachments with one)."""
    vid, caller = await rig.creating_volume()
    host = await rig.files.create_volume(str(vid), 1, location=None, step_key="c")
    await rig.volumes.complete_create(str(vid), host, meta={})
    aid = str(uuid.uuid4())

    def ask(v: Volume) -> int:
        if reserved:
            v.create_attachment(aid, instance_uuid=None, mode=None)
        return v.request_attachment_export(aid, CONNECTOR, reserved=reserved)

    if not reserved:
        await rig.volumes.act(
            caller,
            str(vid),
            lambda v: v.create_attachment(aid, instance_uuid=None, mode=None),
            meta={},
        )
    _, version = await rig.volumes.act(caller, str(vid), ask, meta={})
    return str(vid), caller, host, aid, version


def consume(rig: SagaRig, pool: asyncpg.Pool, driver: Any) -> None:
    runner = SagaRunner(rig.settings, pool, driver)
    rig.start(run_consumer(rig.js, runner.spec, runner.handle, runner.park, asyncio.Event()))


async def test_a_backend_failure_compensates_at_once(rig: SagaRig, pool: asyncpg.Pool) -> None:
    vid, _, host, aid, version = await requested(rig, reserved=False)
    failing = FaultInjectingDriver(rig.files, FaultPlan.parse("attach=fail"))
    consume(rig, pool, failing)

    await until(lambda: _settled(rig, vid, version), "export failed")

    volume = await load(rig, vid)
    assert (volume.status, volume.attachments[aid]["attach_status"]) == (
        Status.RESERVED,
        "reserved",
    )
    assert failing.count("attach") == 1
    assert (await topics(pool, vid))[-1] == "ExportFailed"
    assert rig.files.exports(vid, host) == []


async def test_a_failure_that_keeps_coming_gives_up_and_takes_the_reservation_back(
    rig: SagaRig, pool: asyncpg.Pool
) -> None:
    vid, _, host, _, version = await requested(rig, reserved=True)
    broken = Counting(
        rig.files, "initialize_connection", vid, failure=RuntimeError("target daemon gone")
    )
    consume(rig, pool, broken)

    await until(lambda: _settled(rig, vid, version), "export gave up")

    volume = await load(rig, vid)
    assert (volume.status, volume.attachments) == (Status.AVAILABLE, {})
    assert broken.calls == rig.settings.saga_max_deliver
    recorded = await topics(pool, vid)
    assert recorded[-2:] == ["ExportFailed", "Detached"], recorded
    assert recorded.count("ExportFailed") == 1
    assert rig.files.exports(vid, host) == []


class Gated:
    """The file driver with initialize_connection held until the test lets it answer."""

    def __init__(self, inner: FileDriver) -> None:
        self.inner = inner
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def initialize_connection(
        self, volume_id: str, location: str, spec: ExportSpec, *, step_key: str
    ) -> dict[str, Any]:
        info = await self.inner.initialize_connection(volume_id, location, spec, step_key=step_key)
        self.started.set()
        await self.release.wait()
        return info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_an_export_for_an_attachment_deleted_meanwhile_is_removed(rig: SagaRig) -> None:
    vid, caller, host, aid, version = await requested(rig, reserved=False)
    gated = Gated(rig.files)
    saga = ExportSaga(rig.volumes, gated)  # type: ignore[arg-type]
    env = ReceivedEnvelope(
        id=f"{vid}:{version}",
        type="volume.export_requested",
        aggregate="volume",
        aggregate_id=vid,
        version=version,
        position=1,
        occurred_at="2026-01-01T00:00:00Z",
    )
    reaction = asyncio.create_task(saga.when_export_requested_export(env))
    await asyncio.wait_for(gated.started.wait(), 10)
    assert [e["export_id"] for e in rig.files.exports(vid, host)] == [aid]
    deleted = await rig.volumes.act(
        caller, vid, lambda v: v.request_attachment_delete(aid), meta={}
    )
    assert deleted[1] is None  # nothing exported yet as far as the volume knows: at once

    gated.release.set()
    await asyncio.wait_for(reaction, 10)

    assert rig.files.exports(vid, host) == []
    volume = await load(rig, vid)
    assert (volume.attachments, exports.registry(volume)) == ({}, {})
    assert (await topics(rig.volumes.store.pool, vid))[-1] == "ExportFailed"


async def _settled(rig: SagaRig, vid: str, version: int) -> bool:
    return (await load(rig, vid)).export_request(version) is None
