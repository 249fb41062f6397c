"""The snapshot and retype sagas without NATS or PostgreSQL (see test_volume_sagas.py):
a snapshot's copy is made and removed with the quota given back once; a retype whose
backend suits the new type switches in place and moves the quota."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from cinderblock.domain.snapshot import SnapshotStatus
from cinderblock.domain.status import Status
from cinderblock.store.volumes import DEFAULT_TYPE_NAME
from tests.helpers.saga_bench import SagaBench, saga_bench


def _allow(_: object) -> None:
    return None


@pytest.fixture
def bench(tmp_path: Path) -> SagaBench:
    return saga_bench(tmp_path)


async def _available(bench: SagaBench, size_gb: int = 1) -> str:
    vid = await bench.service.created(size_gb)
    await bench.pump()
    assert (await bench.service.volume(vid)).status == Status.AVAILABLE
    return vid


async def test_a_snapshot_is_copied_then_removed_once(bench: SagaBench) -> None:
    vid = await _available(bench, 2)
    sid = str(uuid.uuid4())
    await bench.service.volumes.create_snapshot(
        bench.service.caller,
        vid,
        uuid.UUID(sid),
        name=None,
        description=None,
        metadata={},
        force=False,
        in_use_ok=False,
        meta={},
        authorize=_allow,
    )
    await bench.pump()
    assert (await bench.service.snapshot(sid)).status == SnapshotStatus.AVAILABLE
    assert await bench.service.usage("snapshots", "gigabytes") == (1, 4)
    appends = bench.service.appends
    await bench.deliver(bench.last("snapshot.created"))  # redelivered
    assert bench.service.appends == appends

    await bench.service.volumes.snapshot_act(
        bench.service.caller, sid, lambda s: s.request_delete(), meta={}, authorize=_allow
    )
    await bench.pump()
    assert (await bench.service.snapshot(sid)).is_deleted
    assert (await bench.service.volume(vid)).snapshot_ids == []
    assert await bench.service.usage("snapshots", "gigabytes") == (0, 2)
    appends = bench.service.appends
    await bench.deliver(bench.last("snapshot.delete_requested"))  # redelivered
    assert bench.service.appends == appends


async def test_a_retype_the_backend_suits_switches_in_place(bench: SagaBench) -> None:
    vid = await _available(bench, 2)
    host = (await bench.service.volume(vid)).host
    await bench.service.volumes.create_type(
        name="gold", description=None, is_public=True, extra_specs={}, meta={}
    )
    gold = await bench.service.volumes.find_type("gold")
    await bench.service.volumes.retype_volume(
        bench.service.caller,
        vid,
        gold,
        migration_policy="never",
        reservation_id="r",
        meta={},
        authorize=_allow,
    )
    await bench.pump()
    volume = await bench.service.volume(vid)
    assert (volume.status, volume.volume_type_name, volume.host) == (
        Status.AVAILABLE,
        "gold",
        host,
    )
    assert await bench.service.usage("volumes_gold", f"volumes_{DEFAULT_TYPE_NAME}") == (1, 0)
    appends = bench.service.appends
    await bench.deliver(bench.last("volume.retype_requested"))  # redelivered
    assert bench.service.appends == appends
