"""The sagas' reactions to create, extend and delete, run without NATS or PostgreSQL: the
command service on the in-memory store, the file driver under tmp_path, every appended
event delivered as the relay would publish it. A redelivery changes nothing; a failing
driver step ends in the compensation, never in a transient status."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from cinderblock.domain.status import Status
from cinderblock.drivers.base import BackendError
from tests.helpers.driver_wrappers import Counting
from tests.helpers.saga_bench import POOL, SagaBench, saga_bench

GIB = 2**30


@pytest.fixture
def bench(tmp_path: Path) -> SagaBench:
    return saga_bench(tmp_path)


async def _available(bench: SagaBench, size_gb: int = 1) -> str:
    vid = await bench.service.created(size_gb)
    assert await bench.pump() == [
        "volume.created",
        "quota.created",
        "quota.usage_adjusted",
        "volume.create_completed",
    ]
    return vid


async def test_a_created_volume_is_placed_and_made_once(bench: SagaBench) -> None:
    vid = await _available(bench)
    volume = await bench.service.volume(vid)
    assert volume.status == Status.AVAILABLE
    assert volume.host is not None
    assert volume.host.startswith(POOL)
    path = bench.file_of(vid, volume.host)
    assert path.stat().st_size == GIB
    completed = bench.service.store.log.of(uuid.UUID(vid))[-1]
    assert completed.meta["actor"] == "saga:create"
    assert completed.meta["causation_id"] == f"{vid}:1"
    assert completed.meta["request_id"] == "req-create"
    appends = bench.service.appends
    await bench.deliver(bench.last("volume.created"))  # redelivered
    assert bench.service.appends == appends
    assert bench.service.events(vid) == ["Volume.Created", "Volume.CreateCompleted"]


async def test_an_extend_grows_the_file_and_commits_the_quota(bench: SagaBench) -> None:
    vid = await _available(bench)
    await bench.service.volumes.extend_volume(
        bench.service.caller, vid, 3, in_use_allowed=False, reservation_id="r", meta={}
    )
    await bench.pump()
    volume = await bench.service.volume(vid)
    assert (volume.status, volume.size_gb) == (Status.AVAILABLE, 3)
    assert volume.host is not None
    assert bench.file_of(vid, volume.host).stat().st_size == 3 * GIB
    quota = await bench.service.quota()
    assert (quota.in_use["gigabytes"], quota.reserved("gigabytes")) == (3, 0)
    appends = bench.service.appends
    await bench.deliver(bench.last("volume.extend_requested"))  # redelivered
    assert bench.service.appends == appends


async def test_a_failing_extend_is_compensated(tmp_path: Path) -> None:
    failing: list[Counting] = []

    def broken(files: object) -> Counting:
        failing.append(Counting(files, "extend_volume", "", failure=None))
        return failing[0]

    bench = saga_bench(tmp_path, driver=broken)
    vid = await _available(bench)
    failing[0].subject = vid
    failing[0].failure = BackendError("extend", vid, "controller unreachable")
    await bench.service.volumes.extend_volume(
        bench.service.caller, vid, 2, in_use_allowed=False, reservation_id="r", meta={}
    )
    await bench.pump()
    assert failing[0].calls == 1
    volume = await bench.service.volume(vid)
    assert (volume.status, volume.size_gb) == (Status.ERROR_EXTENDING, 1)
    quota = await bench.service.quota()
    assert (quota.in_use["gigabytes"], quota.reserved("gigabytes")) == (1, 0)


async def test_giving_up_on_an_extend_records_the_failure_once(bench: SagaBench) -> None:
    vid = await _available(bench)
    await bench.service.volumes.extend_volume(
        bench.service.caller, vid, 2, in_use_allowed=False, reservation_id="r", meta={}
    )
    requested = bench.envelope(bench.service.store.log.of(uuid.UUID(vid))[-1])
    assert requested.type == "volume.extend_requested"
    for _ in range(2):  # the last delivery's give-up, then a redelivery of it
        await bench.sagas.give_up["volume.extend_requested"](requested)
    volume = await bench.service.volume(vid)
    assert volume.status == Status.ERROR_EXTENDING
    assert bench.service.events(vid)[-1] == "Volume.ExtendFailed"
    assert bench.service.events(vid).count("Volume.ExtendFailed") == 1
    assert await bench.service.usage("gigabytes") == (1,)


async def test_a_deleted_volume_leaves_its_pool_and_gives_its_quota_back(bench: SagaBench) -> None:
    vid = await _available(bench, 2)
    volume = await bench.service.volume(vid)
    assert volume.host is not None
    path = bench.file_of(vid, volume.host)
    await bench.service.volumes.delete_volume(bench.service.caller, vid, meta={})
    await bench.pump()
    assert (await bench.service.volume(vid)).is_deleted
    assert not path.exists()
    assert await bench.service.usage("volumes", "gigabytes") == (0, 0)
    appends = bench.service.appends
    await bench.deliver(bench.last("volume.delete_requested"))  # redelivered
    assert bench.service.appends == appends
