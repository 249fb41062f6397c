"""The cascade delete saga over real JetStream: a worker killed after removing a snapshot's
copy but before recording it is redelivered and finishes; every snapshot and the volume are
recorded deleted once, the quota comes back once, and no file is left."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest_asyncio

from cinderblock.bus.jetstream import run_consumer
from cinderblock.config.settings import Settings
from cinderblock.domain.quota import ProjectQuota, quota_id
from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.drivers.file import FileDriver
from cinderblock.sagas.run import SagaRunner
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.volumes import Caller
from tests.helpers.rigs import SagaRig, open_saga_rig


@pytest_asyncio.fixture
async def rig(pool: asyncpg.Pool, settings: Settings, tmp_path: Path) -> AsyncIterator[SagaRig]:
    async with open_saga_rig(pool, settings, tmp_path) as r:
        yield r


class DiesAfterSnapshotDelete:
    """The file driver, but the worker 'dies' right after it removed the first snapshot."""

    def __init__(self, inner: FileDriver, snapshot_id: str) -> None:
        self.inner = inner
        self.snapshot_id = snapshot_id
        self.removed = asyncio.Event()

    async def delete_snapshot(self, snapshot_id: str, location: str, *, step_key: str) -> None:
        await self.inner.delete_snapshot(snapshot_id, location, step_key=step_key)
        if snapshot_id == self.snapshot_id:
            self.removed.set()
            await asyncio.Event().wait()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


class CountingDeletes:
    """Counts the delete steps of the ids under test (the stream carries other tests' too)."""

    def __init__(self, inner: FileDriver, ids: set[str]) -> None:
        self.inner = inner
        self.ids = ids
        self.calls: dict[str, int] = {}

    def _count(self, some_id: str) -> None:
        if some_id in self.ids:
            self.calls[some_id] = self.calls.get(some_id, 0) + 1

    async def delete_snapshot(self, snapshot_id: str, location: str, *, step_key: str) -> None:
        self._count(snapshot_id)
        await self.inner.delete_snapshot(snapshot_id, location, step_key=step_key)

    async def delete_volume(self, volume_id: str, location: str, *, step_key: str) -> None:
        self._count(volume_id)
        await self.inner.delete_volume(volume_id, location, step_key=step_key)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


async def volume_with_snapshots(r: SagaRig, count: int) -> tuple[Volume, Caller, list[str]]:
    """An available volume on a real file with ``count`` available snapshots."""
    vid, caller = await r.creating_volume()
    host = await r.files.create_volume(str(vid), 1, location=None, step_key="c")
    await r.volumes.complete_create(str(vid), host, meta={})
    sids = []
    for _ in range(count):
        sid = uuid.uuid4()
        await r.volumes.create_snapshot(
            caller,
            str(vid),
            sid,
            name=None,
            description=None,
            metadata={},
            force=False,
            in_use_ok=False,
            meta={},
            authorize=lambda _: None,
        )
        await r.files.create_snapshot(str(vid), str(sid), host, step_key=f"s{sid}")
        await r.volumes.settle_snapshot(str(sid), Snapshot.complete_create, meta={})
        sids.append(str(sid))
    volume = await r.volumes.store.load(vid, Volume)
    assert volume is not None
    return volume, caller, sids


async def until_deleted(pool: asyncpg.Pool, volume: Volume) -> Volume:
    for _ in range(2000):
        current = await AsyncEventStore(pool).load(volume.id, Volume)
        if current is not None and current.status != Status.DELETING:
            return current
        await asyncio.sleep(0.01)
    raise AssertionError(f"volume {volume.id} still deleting")


async def topics(pool: asyncpg.Pool, aggregate_id: uuid.UUID) -> list[str]:
    rows = await pool.fetch(
        "SELECT topic FROM events WHERE originator_id = $1 ORDER BY originator_version",
        aggregate_id,
    )
    return [r["topic"].rpartition(".")[2] for r in rows]


async def test_worker_killed_mid_cascade_is_finished_by_redelivery(
    rig: SagaRig,
    pool: asyncpg.Pool,
) -> None:
    volume, caller, sids = await volume_with_snapshots(rig, 2)
    host = volume.host or ""
    quota = await AsyncEventStore(pool).load(quota_id(caller.project_id), ProjectQuota)
    assert quota is not None
    assert quota.in_use["snapshots"] == 2
    assert quota.in_use["gigabytes"] == 3

    await rig.volumes.delete_volume_cascade(
        caller, volume.vid, meta={"request_id": "req-c"}, force=False, authorize=lambda _: None
    )
    dying = DiesAfterSnapshotDelete(rig.files, sids[0])
    first = SagaRunner(rig.settings, pool, dying)  # type: ignore[arg-type]
    worker = rig.start(run_consumer(rig.js, first.spec, first.handle, first.park, asyncio.Event()))
    await asyncio.wait_for(dying.removed.wait(), 15)
    worker.cancel()  # killed between the snapshot's driver step and its Deleted event
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    assert not rig.files.snapshot_path(sids[0], host).exists()
    half = await AsyncEventStore(pool).load(uuid.UUID(sids[0]), Snapshot)
    assert half is not None
    assert half.status == "deleting"

    counting = CountingDeletes(rig.files, {volume.vid, *sids})
    second = SagaRunner(rig.settings, pool, counting)  # type: ignore[arg-type]
    rig.start(run_consumer(rig.js, second.spec, second.handle, second.park, asyncio.Event()))
    done = await until_deleted(pool, volume)
    assert done.status == Status.DELETED
    assert done.snapshot_ids == []
    # redelivered once: the first snapshot's removal ran again (finding nothing), the rest once
    assert counting.calls == {sids[0]: 1, sids[1]: 1, volume.vid: 1}
    assert not rig.files.volume_path(volume.vid, host).exists()
    assert not any(rig.files.snapshot_path(s, host).exists() for s in sids)
    for sid in sids:
        assert await topics(pool, uuid.UUID(sid)) == [
            "Created",
            "CreateCompleted",
            "DeleteRequested",
            "Deleted",
        ]
    assert (await topics(pool, volume.id))[-1] == "Deleted"
    quota = await AsyncEventStore(pool).load(quota_id(caller.project_id), ProjectQuota)
    assert quota is not None
    assert {k: v for k, v in quota.in_use.items() if v} == {}  # given back exactly once
    assert quota.reservations == {}
