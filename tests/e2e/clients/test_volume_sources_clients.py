"""Unmodified clients create volumes from a snapshot and clone volumes:
python-cinderclient's ``volumes.create(size, snapshot_id=…/source_volid=…)`` and
openstacksdk's ``create_volume(snapshot_id=…/source_volume_id=…)``; the bytes are read back
on the backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cinderclient import exceptions as cinder_exc

from tests.e2e.clients.support import SDK_WARNINGS, Cinder, Sdk, until
from tests.e2e.conftest import System
from tests.helpers.files import read_at, write_at

pytestmark = SDK_WARNINGS

DATA = b"the source's bytes"


def path_of(system: System, volume: Any) -> Any:
    return system.driver.volume_path(volume.id, getattr(volume, "os-vol-host-attr:host"))


@pytest.mark.parametrize("cinder", ["project-in-url"], indirect=True)
async def test_cinderclient_creates_from_a_snapshot_and_clones(
    system: System, cinder: Cinder
) -> None:
    c = cinder.client

    async def available(created: Any) -> Any:
        return await until(lambda: c.volumes.get(created.id), lambda v: v.status != "creating")

    source = await available(await asyncio.to_thread(c.volumes.create, 1, name="cc-source"))
    await asyncio.to_thread(write_at, path_of(system, source), 4096, DATA)
    snap = await asyncio.to_thread(c.volume_snapshots.create, source.id)
    await until(lambda: c.volume_snapshots.get(snap.id), lambda s: s.status == "available")

    from_snap = await available(await asyncio.to_thread(c.volumes.create, 2, snapshot_id=snap.id))
    assert (from_snap.status, from_snap.size, from_snap.snapshot_id) == ("available", 2, snap.id)
    assert await asyncio.to_thread(read_at, path_of(system, from_snap), 4096, len(DATA)) == DATA

    clone = await available(await asyncio.to_thread(c.volumes.create, None, source_volid=source.id))
    assert (clone.status, clone.size, clone.source_volid) == ("available", 1, source.id)
    assert await asyncio.to_thread(read_at, path_of(system, clone), 4096, len(DATA)) == DATA

    with pytest.raises(cinder_exc.BadRequest):
        await asyncio.to_thread(c.volumes.create, 1, snapshot_id=snap.id, source_volid=source.id)


@pytest.mark.parametrize("sdk", ["admin_token-project-in-url"], indirect=True)
async def test_sdk_creates_from_a_snapshot_and_clones(system: System, sdk: Sdk) -> None:
    bs = sdk.bs

    async def available(created: Any) -> Any:
        return await until(lambda: bs.get_volume(created.id), lambda v: v.status != "creating")

    source = await available(await asyncio.to_thread(bs.create_volume, size=1))
    path = system.driver.volume_path(source.id, source.host)
    await asyncio.to_thread(write_at, path, 4096, DATA)
    snap = await asyncio.to_thread(bs.create_snapshot, volume_id=source.id)
    await until(lambda: bs.get_snapshot(snap.id), lambda s: s.status == "available")

    from_snap = await available(await asyncio.to_thread(bs.create_volume, snapshot_id=snap.id))
    assert (from_snap.status, from_snap.size, from_snap.snapshot_id) == ("available", 1, snap.id)
    new_path = system.driver.volume_path(from_snap.id, from_snap.host)
    assert await asyncio.to_thread(read_at, new_path, 4096, len(DATA)) == DATA

    clone = await available(await asyncio.to_thread(bs.create_volume, source_volume_id=source.id))
    assert (clone.status, clone.source_volume_id) == ("available", source.id)
    clone_path = system.driver.volume_path(clone.id, clone.host)
    assert await asyncio.to_thread(read_at, clone_path, 4096, len(DATA)) == DATA
