"""Unmodified python-cinderclient and openstacksdk drive snapshot metadata and the cascade
delete of a volume with its snapshots, reading each change back through their own calls."""

from __future__ import annotations

import asyncio

from cinderclient import exceptions as cinder_exc

from tests.e2e.clients.support import SDK_WARNINGS, Cinder, Sdk, until
from tests.e2e.clients.support import sdk_status as _sdk_status
from tests.e2e.conftest import System

pytestmark = SDK_WARNINGS


def cinder_snapshot_status(c: object, snapshot_id: str) -> str:
    try:
        status: str = c.volume_snapshots.get(snapshot_id).status  # type: ignore[attr-defined]
    except cinder_exc.NotFound:
        return "gone"
    return status


async def test_cinderclient_snapshot_metadata_and_cascade(system: System, cinder: Cinder) -> None:
    c = cinder.client
    created = await asyncio.to_thread(c.volumes.create, 1)
    volume = await until(lambda: c.volumes.get(created.id), lambda v: v.status == "available")
    snaps = []
    for _ in range(2):
        snap = await asyncio.to_thread(c.volume_snapshots.create, volume.id)
        snaps.append(
            await until(
                lambda s=snap: c.volume_snapshots.get(s.id), lambda s: s.status != "creating"
            )
        )
    first = snaps[0]
    await asyncio.to_thread(c.volume_snapshots.set_metadata, first, {"a": "1", "b": "2"})
    await asyncio.to_thread(c.volume_snapshots.delete_metadata, first, ["b"])
    assert (await asyncio.to_thread(c.volume_snapshots.get, first.id)).metadata == {"a": "1"}
    await asyncio.to_thread(c.volume_snapshots.update_all_metadata, first, {"c": "3"})
    assert (await asyncio.to_thread(c.volume_snapshots.get, first.id)).metadata == {"c": "3"}

    await asyncio.to_thread(c.volumes.delete, volume, cascade=True)
    for snap in snaps:
        await until(lambda s=snap: cinder_snapshot_status(c, s.id), lambda s: s == "gone")
    usage = await until(
        lambda: c.quotas.get(cinder.project_id, usage=True), lambda q: q.volumes["in_use"] == 0
    )
    assert (usage.snapshots["in_use"], usage.gigabytes["in_use"]) == (0, 0)


async def test_sdk_snapshot_metadata_and_cascade(system: System, sdk: Sdk) -> None:
    bs = sdk.bs
    created = await asyncio.to_thread(bs.create_volume, size=1)
    await until(lambda: bs.get_volume(created.id), lambda v: v.status == "available")
    snap = await asyncio.to_thread(bs.create_snapshot, volume_id=created.id)
    await until(lambda: bs.get_snapshot(snap.id), lambda s: s.status == "available")
    await asyncio.to_thread(bs.set_snapshot_metadata, snap, k1="v1", k2="v2")
    await asyncio.to_thread(bs.delete_snapshot_metadata, snap, keys=["k2"])
    fetched = await asyncio.to_thread(bs.fetch_snapshot_metadata, snap)
    assert fetched.metadata == {"k1": "v1"}

    await asyncio.to_thread(bs.delete_volume, created, ignore_missing=False, cascade=True)
    await until(lambda: _sdk_status(bs, created.id), lambda s: s == "gone")
    shown = await system.client.request("GET", "", url=f"{system.url}/v3/snapshots/{snap.id}")
    assert shown.status == 404
