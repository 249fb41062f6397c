"""An unmodified python-cinderclient drives the resources the actions need: snapshots,
volume types with extra specs, the attachments API (3.27, os-complete 3.44) and quota
sets, reading each change back through its own calls."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from cinderclient import exceptions as cinder_exc

from tests.e2e.clients.support import Cinder, cinder_at, until
from tests.e2e.conftest import System

pytestmark = pytest.mark.parametrize("cinder", ["project-in-url"], indirect=True)


async def available(c: Any, size: int = 1, **fields: Any) -> Any:
    created = await asyncio.to_thread(c.volumes.create, size, **fields)
    return await until(lambda: c.volumes.get(created.id), lambda v: v.status == "available")


def snapshot_status(c: Any, snapshot_id: str) -> str:
    try:
        status: str = c.volume_snapshots.get(snapshot_id).status
    except cinder_exc.NotFound:
        return "gone"
    return status


async def test_cinderclient_snapshot_lifecycle(system: System, cinder: Cinder) -> None:
    c = cinder.client
    volume = await available(c, 1)
    snap = await asyncio.to_thread(
        c.volume_snapshots.create, volume.id, name="cc-snap", description="by cinder"
    )
    assert (snap.status, snap.volume_id, snap.name) == ("creating", volume.id, "cc-snap")
    done = await until(lambda: c.volume_snapshots.get(snap.id), lambda s: s.status != "creating")
    assert (done.status, done.size, done.description) == ("available", 1, "by cinder")
    assert system.driver.snapshot_path(snap.id, getattr(volume, "os-vol-host-attr:host")).exists()

    listed = await asyncio.to_thread(c.volume_snapshots.list, search_opts={"volume_id": volume.id})
    assert [(s.id, s.status) for s in listed] == [(snap.id, "available")]
    summary = await asyncio.to_thread(c.volume_snapshots.list, detailed=False)
    assert snap.id in [s.id for s in summary]
    await asyncio.to_thread(c.volume_snapshots.update, snap, name="renamed")
    assert (await asyncio.to_thread(c.volume_snapshots.get, snap.id)).name == "renamed"
    usage = await asyncio.to_thread(c.quotas.get, cinder.project_id, usage=True)
    assert usage.snapshots["in_use"] == 1

    with pytest.raises(cinder_exc.BadRequest):  # a volume with snapshots stays
        await asyncio.to_thread(c.volumes.delete, volume)
    await asyncio.to_thread(c.volume_snapshots.delete, snap)
    await until(lambda: snapshot_status(c, snap.id), lambda s: s == "gone")
    remaining = await asyncio.to_thread(
        c.volume_snapshots.list, search_opts={"volume_id": volume.id}
    )
    assert list(remaining) == []
    usage = await asyncio.to_thread(c.quotas.get, cinder.project_id, usage=True)
    assert usage.snapshots["in_use"] == 0


async def test_cinderclient_volume_types_and_extra_specs(system: System, cinder: Cinder) -> None:
    c = cinder.client
    name = f"cc-type-{uuid.uuid4().hex[:8]}"
    vtype = await asyncio.to_thread(c.volume_types.create, name, description="gold")
    assert (vtype.name, vtype.description, vtype.is_public) == (name, "gold", True)
    await asyncio.to_thread(
        vtype.set_keys, {"volume_backend_name": "file-b", "multiattach": "<is> True"}
    )
    got = await asyncio.to_thread(c.volume_types.get, vtype.id)
    keys = await asyncio.to_thread(got.get_keys)
    assert keys == {"volume_backend_name": "file-b", "multiattach": "<is> True"}
    assert got.extra_specs == {"volume_backend_name": "file-b", "multiattach": "<is> True"}
    await asyncio.to_thread(got.unset_keys, ["multiattach"])
    assert await asyncio.to_thread(got.get_keys) == {"volume_backend_name": "file-b"}
    await asyncio.to_thread(c.volume_types.update, vtype, description="silver")
    assert (await asyncio.to_thread(c.volume_types.get, vtype.id)).description == "silver"
    listed = await asyncio.to_thread(c.volume_types.list)
    assert {name, "__DEFAULT__"} <= {t.name for t in listed}
    default = await asyncio.to_thread(c.volume_types.default)
    assert default.name == "__DEFAULT__"

    volume = await available(c, 1, volume_type=name)
    assert volume.volume_type == name
    assert "@file-b#" in getattr(volume, "os-vol-host-attr:host")
    with pytest.raises(cinder_exc.BadRequest):  # in use by a volume
        await asyncio.to_thread(c.volume_types.delete, vtype)
    await asyncio.to_thread(c.volumes.delete, volume)
    await until(lambda: [v.id for v in c.volumes.list()], lambda ids: volume.id not in ids)
    await asyncio.to_thread(c.volume_types.delete, vtype)
    with pytest.raises(cinder_exc.NotFound):
        await asyncio.to_thread(c.volume_types.get, vtype.id)


async def test_cinderclient_attachments_api(system: System, cinder: Cinder) -> None:
    c = cinder.client
    volume = await available(c, 1)
    server = str(uuid.uuid4())
    with pytest.raises(cinder_exc.VersionNotFoundForAPIMethod):
        await asyncio.to_thread(cinder_at(cinder, "3.26").attachments.create, volume.id, {})
    created = await asyncio.to_thread(c.attachments.create, volume.id, None, server, "rw")
    assert (created["status"], created["instance"], created["volume_id"]) == (
        "reserved",
        server,
        volume.id,
    )
    assert (await asyncio.to_thread(c.volumes.get, volume.id)).status == "reserved"

    connector = {"host": "compute-1", "mountpoint": "/dev/vdb", "initiator": "iqn.x"}
    updated = await asyncio.to_thread(c.attachments.update, created["id"], connector)
    assert updated.status == "attaching"
    assert updated.connection_info["driver_volume_type"] == "local"
    assert updated.attach_mode == "rw"
    resp = await asyncio.to_thread(c.attachments.complete, created["id"])
    assert resp.status_code == 204
    volume = await asyncio.to_thread(c.volumes.get, volume.id)
    assert volume.status == "in-use"
    assert [a["attachment_id"] for a in volume.attachments] == [created["id"]]

    shown = await asyncio.to_thread(c.attachments.show, created["id"])
    assert (shown.status, shown.instance) == ("attached", server)
    listed = await asyncio.to_thread(c.attachments.list, search_opts={"volume_id": volume.id})
    assert [a.id for a in listed] == [created["id"]]
    detailed = await asyncio.to_thread(c.attachments.list, detailed=True)
    assert created["id"] in [a.id for a in detailed]

    await asyncio.to_thread(c.attachments.delete, created["id"])
    volume = await asyncio.to_thread(c.volumes.get, volume.id)
    assert (volume.status, volume.attachments) == ("available", [])
    with pytest.raises(cinder_exc.NotFound):
        await asyncio.to_thread(c.attachments.show, created["id"])


async def test_cinderclient_quota_sets(system: System, cinder: Cinder) -> None:
    c, project = cinder.client, cinder.project_id
    defaults = await asyncio.to_thread(c.quotas.defaults, project)
    assert (defaults.volumes, defaults.gigabytes, defaults.snapshots) == (10, 1000, 10)
    await available(c, 2)
    usage = await asyncio.to_thread(c.quotas.get, project, usage=True)
    assert usage.volumes == {"limit": 10, "in_use": 1, "reserved": 0}
    assert usage.gigabytes["in_use"] == 2
    # cinderclient sends ``tenant_id`` in the body too (Cinder ignores it, so do we).
    updated = await asyncio.to_thread(c.quotas.update, project, volumes=2, gigabytes=5)
    assert (updated.volumes, updated.gigabytes) == (2, 5)
    shown = await asyncio.to_thread(c.quotas.get, project)
    assert (shown.volumes, shown.gigabytes) == (2, 5)
    with pytest.raises(cinder_exc.OverLimit):
        await asyncio.to_thread(c.volumes.create, 4)
    with pytest.raises(cinder_exc.BadRequest):  # below what is used
        await asyncio.to_thread(c.quotas.update, project, gigabytes=1)
    await asyncio.to_thread(c.quotas.delete, project)
    assert (await asyncio.to_thread(c.quotas.get, project)).volumes == 10


async def test_cinderclient_limits_and_encryption_metadata(cinder: Cinder) -> None:
    """``cinder absolute-limits`` and the call Nova makes before an encrypted attach."""
    c = cinder.client
    volume = await available(c, 2)
    limits = await asyncio.to_thread(c.limits.get)
    absolute = {limit.name: limit.value for limit in limits.absolute}
    assert (absolute["totalVolumesUsed"], absolute["totalGigabytesUsed"]) == (1, 2)
    assert absolute["maxTotalVolumes"] >= 1
    assert list(limits.rate) == []
    metadata = await asyncio.to_thread(c.volumes.get_encryption_metadata, volume.id)
    assert metadata == {"encryption_key_id": None}
