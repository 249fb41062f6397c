"""Snapshot verbs of Volumes on the in-memory store: the volume, the snapshot and the
quota move in one append; refusals append nothing; saga outcomes are recorded once."""

from __future__ import annotations

import uuid

import pytest

from cinderblock.domain.errors import InvalidVolumeError, QuotaExceededError
from cinderblock.domain.snapshot import SnapshotStatus
from cinderblock.store.eventstore import Position
from tests.helpers.commands import Service


def _allow(_: object) -> None:
    return None


async def _snapshot(service: Service, volume_id: str) -> tuple[str, Position]:
    sid = uuid.uuid4()
    at = await service.volumes.create_snapshot(
        service.caller,
        volume_id,
        sid,
        name="snap",
        description=None,
        metadata={"k": "v"},
        force=False,
        in_use_ok=False,
        meta={},
        authorize=_allow,
    )
    return str(sid), at


async def test_a_snapshot_takes_the_volume_the_snapshot_and_quota_in_one_append(
    service: Service,
) -> None:
    vid = await service.available(2)
    sid, at = await _snapshot(service, vid)
    assert service.appended(at) == [
        "Volume.SnapshotTaken",
        "Snapshot.Created",
        "ProjectQuota.UsageAdjusted",
    ]
    snapshot = await service.snapshot(sid)
    assert (snapshot.status, snapshot.volume_id, snapshot.volume_size) == (
        SnapshotStatus.CREATING,
        vid,
        2,
    )
    assert (await service.volume(vid)).snapshot_ids == [sid]
    assert await service.usage("snapshots", "gigabytes") == (1, 4)


async def test_the_snapshot_saga_completes_it_once(service: Service) -> None:
    vid = await service.available()
    sid, _ = await _snapshot(service, vid)
    assert await service.volumes.settle_snapshot(sid, lambda s: s.complete_create(), meta={})
    assert (await service.snapshot(sid)).status == SnapshotStatus.AVAILABLE
    appends = service.appends
    assert not await service.volumes.settle_snapshot(sid, lambda s: s.complete_create(), meta={})
    assert service.appends == appends


async def test_a_snapshot_over_the_count_is_refused_and_appends_nothing(
    service: Service,
) -> None:
    vid = await service.available()
    await _snapshot(service, vid)
    await _snapshot(service, vid)
    appends = service.appends
    with pytest.raises(QuotaExceededError) as refused:
        await _snapshot(service, vid)
    assert "Maximum number of snapshots allowed (2) exceeded" in str(refused.value)
    assert service.appends == appends
    assert len((await service.volume(vid)).snapshot_ids) == 2


async def test_a_volume_never_placed_has_no_snapshot(service: Service) -> None:
    vid = await service.created()
    with pytest.raises(InvalidVolumeError):
        await _snapshot(service, vid)
    assert service.events(vid) == ["Volume.Created"]


async def test_a_volume_with_snapshots_is_not_deleted(service: Service) -> None:
    vid = await service.available()
    await _snapshot(service, vid)
    appends = service.appends
    with pytest.raises(InvalidVolumeError):
        await service.volumes.delete_volume(service.caller, vid, meta={})
    assert service.appends == appends


async def test_a_deleted_snapshot_leaves_its_volume_and_gives_its_quota_back_once(
    service: Service,
) -> None:
    vid = await service.available(2)
    sid, _ = await _snapshot(service, vid)
    await service.volumes.settle_snapshot(sid, lambda s: s.complete_create(), meta={})
    await service.volumes.snapshot_act(
        service.caller, sid, lambda s: s.request_delete(), meta={}, authorize=_allow
    )
    assert (await service.snapshot(sid)).status == SnapshotStatus.DELETING
    assert await service.volumes.complete_snapshot_delete(sid, meta={})
    assert (await service.volume(vid)).snapshot_ids == []
    assert await service.usage("snapshots", "gigabytes") == (0, 2)
    appends = service.appends
    assert not await service.volumes.complete_snapshot_delete(sid, meta={})
    assert service.appends == appends
