"""openstacksdk's block_storage v3 proxy drives every volume action it exposes, each result
read back through the SDK's own resources (and on the backend where bytes move)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from openstack import exceptions as sdk_exc

from tests.e2e.clients.support import SDK_WARNINGS, Sdk, sdk_status, until
from tests.e2e.conftest import System
from tests.helpers.cinder import other_backend
from tests.helpers.files import read_at, write_at

pytestmark = [
    *SDK_WARNINGS,
    pytest.mark.parametrize("sdk", ["admin_token-project-in-url"], indirect=True),
]


async def available(bs: Any, size: int = 1, **attrs: Any) -> Any:
    created = await asyncio.to_thread(bs.create_volume, size=size, **attrs)
    return await until(lambda: bs.get_volume(created.id), lambda v: v.status == "available")


async def status_is(bs: Any, volume_id: str, status: str) -> Any:
    return await until(lambda: bs.get_volume(volume_id), lambda v: v.status == status)


async def test_sdk_attach_bookkeeping_and_flags(system: System, sdk: Sdk) -> None:
    bs = sdk.bs
    volume = await available(bs)
    vid = volume.id
    await asyncio.to_thread(bs.reserve_volume, volume)
    await status_is(bs, vid, "attaching")
    await asyncio.to_thread(bs.unreserve_volume, volume)
    await status_is(bs, vid, "available")

    server = str(uuid.uuid4())
    await asyncio.to_thread(bs.attach_volume, volume, "/dev/vdb", instance=server)
    attached = await status_is(bs, vid, "in-use")
    assert [a["server_id"] for a in attached.attachments] == [server]
    await asyncio.to_thread(bs.begin_volume_detaching, volume)
    await status_is(bs, vid, "detaching")
    await asyncio.to_thread(bs.abort_volume_detaching, volume)
    await status_is(bs, vid, "in-use")
    attachment_id = attached.attachments[0]["attachment_id"]
    await asyncio.to_thread(bs.detach_volume, volume, attachment_id)
    detached = await status_is(bs, vid, "available")
    assert detached.attachments == []

    # force detach (os-force_detach) with the connector the SDK passes along
    await asyncio.to_thread(bs.attach_volume, volume, "/dev/vdc", host_name="node-9")
    attached = await status_is(bs, vid, "in-use")
    assert attached.attachments[0]["host_name"] == "node-9"
    connector = {"host": "node-9", "initiator": "iqn.x"}
    await asyncio.to_thread(
        bs.detach_volume,
        volume,
        attached.attachments[0]["attachment_id"],
        force=True,
        connector=connector,
    )
    assert (await status_is(bs, vid, "available")).attachments == []

    await asyncio.to_thread(bs.set_volume_readonly, volume, True)
    flagged = await until(lambda: bs.get_volume(vid), lambda v: "readonly" in v.metadata)
    assert flagged.metadata["readonly"] == "True"
    info = await asyncio.to_thread(bs.init_volume_attachment, volume, connector)
    assert (info["driver_volume_type"], info["data"]["access_mode"]) == ("local", "ro")
    assert info["data"]["device_path"] == str(system.driver.volume_path(vid, volume.host))
    assert await asyncio.to_thread(bs.terminate_volume_attachment, volume, connector) is None
    await asyncio.to_thread(bs.set_volume_readonly, volume, False)
    await until(lambda: bs.get_volume(vid), lambda v: v.metadata.get("readonly") == "False")

    await asyncio.to_thread(bs.set_volume_bootable_status, volume, True)
    assert (await asyncio.to_thread(bs.get_volume, vid)).is_bootable is True
    await asyncio.to_thread(bs.set_volume_image_metadata, volume, os_distro="fedora", hw="q35")
    shown = await asyncio.to_thread(bs.get_volume, vid)
    assert shown.volume_image_metadata == {"os_distro": "fedora", "hw": "q35"}
    await asyncio.to_thread(bs.delete_volume_image_metadata, volume, keys=["hw"])
    shown = await asyncio.to_thread(bs.get_volume, vid)
    assert shown.volume_image_metadata == {"os_distro": "fedora"}


async def test_sdk_admin_actions(system: System, sdk: Sdk) -> None:
    bs = sdk.bs
    volume = await available(bs)
    await asyncio.to_thread(
        bs.reset_volume_status, volume, "error", "detached", migration_status="error"
    )
    reset = await status_is(bs, volume.id, "error")
    assert reset.migration_status == "error"
    await asyncio.to_thread(bs.reset_volume_status, volume, status="available")
    await status_is(bs, volume.id, "available")

    assert await asyncio.to_thread(bs.extend_volume, volume, 2) is None
    await until(lambda: bs.get_volume(volume.id), lambda v: (v.status, v.size) == ("available", 2))

    stuck = await available(bs)
    await asyncio.to_thread(bs.reset_volume_status, stuck, status="error")
    await status_is(bs, stuck.id, "error")
    await asyncio.to_thread(bs.delete_volume, stuck, force=True)
    await until(lambda: sdk_status(bs, stuck.id), lambda s: s == "gone")

    path = system.driver.volume_path(volume.id, volume.host)
    await asyncio.to_thread(bs.unmanage_volume, volume)
    await until(lambda: sdk_status(bs, volume.id), lambda s: s == "gone")
    assert await asyncio.to_thread(path.exists)  # left on the backend


async def test_sdk_migrates_and_completes(system: System, sdk: Sdk) -> None:
    bs = sdk.bs
    volume = await available(bs)
    old_path = system.driver.volume_path(volume.id, volume.host)
    await asyncio.to_thread(write_at, old_path, 8192, b"sdk migrated")
    target = other_backend(system, volume.host)
    await asyncio.to_thread(bs.migrate_volume, volume, host=target, lock_volume=True)
    moved = await until(
        lambda: bs.get_volume(volume.id), lambda v: v.migration_status in ("success", "error")
    )
    assert (moved.status, moved.migration_status) == ("available", "success")
    assert moved.host.startswith(f"{target}#")
    new_path = system.driver.volume_path(volume.id, moved.host)
    assert await asyncio.to_thread(read_at, new_path, 8192, 12) == b"sdk migrated"

    with pytest.raises(sdk_exc.BadRequestException) as cluster:
        await asyncio.to_thread(bs.migrate_volume, volume, cluster="c1@x")
    assert cluster.value.details == "Invalid host: No available service named 'c1@x'"

    other, fresh = await available(bs), await available(bs)
    assert await asyncio.to_thread(bs.complete_volume_migration, other, fresh.id) is None
    with pytest.raises(sdk_exc.BadRequestException) as not_mid:
        await asyncio.to_thread(bs.complete_volume_migration, moved, fresh.id)
    assert not_mid.value.details == "Invalid volume: Destination volume not mid-migration."


async def test_sdk_retypes(system: System, sdk: Sdk) -> None:
    bs = sdk.bs
    tag = uuid.uuid4().hex[:6]
    on_a = await asyncio.to_thread(
        bs.create_type, name=f"sdk-a-{tag}", extra_specs={"volume_backend_name": "file-a"}
    )
    on_b = await asyncio.to_thread(
        bs.create_type, name=f"sdk-b-{tag}", extra_specs={"volume_backend_name": "file-b"}
    )
    volume = await available(bs, volume_type=on_a.name)
    assert "@file-a#" in volume.host

    await asyncio.to_thread(bs.retype_volume, volume, on_b)  # policy never by default
    kept = await until(lambda: bs.get_volume(volume.id), lambda v: v.status != "retyping")
    assert (kept.status, kept.volume_type, kept.host) == ("available", on_a.name, volume.host)
    await asyncio.to_thread(bs.retype_volume, volume, on_b, migration_policy="on-demand")
    moved = await until(lambda: bs.get_volume(volume.id), lambda v: v.status != "retyping")
    assert (moved.status, moved.volume_type) == ("available", on_b.name)
    assert "@file-b#" in moved.host
    old = system.driver.volume_path(volume.id, volume.host)
    await until(lambda: old.exists(), lambda exists: not exists)


async def test_sdk_snapshots_and_revert(system: System, sdk: Sdk) -> None:
    bs = sdk.bs
    volume = await available(bs)
    path = system.driver.volume_path(volume.id, volume.host)
    await asyncio.to_thread(write_at, path, 0, b"snapshotted")
    snap = await asyncio.to_thread(bs.create_snapshot, volume_id=volume.id, name="sdk-snap")
    snap = await until(lambda: bs.get_snapshot(snap.id), lambda s: s.status != "creating")
    assert (snap.status, snap.volume_id, snap.size) == ("available", volume.id, 1)
    listed = await asyncio.to_thread(lambda: list(bs.snapshots(volume_id=volume.id)))
    assert [s.id for s in listed] == [snap.id]
    found = await asyncio.to_thread(bs.find_snapshot, "sdk-snap", ignore_missing=False)
    assert found.id == snap.id

    await asyncio.to_thread(write_at, path, 0, b"overwritten")
    await asyncio.to_thread(bs.revert_volume_to_snapshot, volume, snap)
    await status_is(bs, volume.id, "available")
    assert await asyncio.to_thread(read_at, path, 0, 11) == b"snapshotted"

    await asyncio.to_thread(bs.delete_snapshot, snap)
    await until(lambda: list(bs.snapshots(volume_id=volume.id)), lambda snapshots: snapshots == [])
    assert not await asyncio.to_thread(system.driver.snapshot_path(snap.id, volume.host).exists)


async def test_sdk_uploads_to_an_image(system: System, sdk: Sdk) -> None:
    bs = sdk.bs
    volume = await available(bs)
    path = system.driver.volume_path(volume.id, volume.host)
    await asyncio.to_thread(write_at, path, 2**20, b"sdk image")
    answer = await asyncio.to_thread(
        bs.upload_volume_to_image,
        volume,
        "sdk-image",
        disk_format="raw",
        container_format="bare",
        visibility="private",
        protected=False,
    )
    assert (answer["status"], answer["image_name"], answer["visibility"]) == (
        "uploading",
        "sdk-image",
        "private",
    )
    await status_is(bs, volume.id, "available")
    image = Path(system.settings.data_dir) / "images" / f"{answer['image_id']}.img"
    assert await asyncio.to_thread(read_at, image, 2**20, 9) == b"sdk image"
    record = json.loads(await asyncio.to_thread(image.with_suffix(".json").read_text))
    assert (record["status"], record["name"]) == ("active", "sdk-image")


async def test_sdk_types_and_extra_specs(system: System, sdk: Sdk) -> None:
    bs = sdk.bs
    name = f"sdk-type-{uuid.uuid4().hex[:8]}"
    vtype = await asyncio.to_thread(bs.create_type, name=name, description="gold")
    assert (vtype.name, vtype.description, vtype.is_public) == (name, "gold", True)
    updated = await asyncio.to_thread(
        bs.update_type_extra_specs, vtype, volume_backend_name="file-a", tier="1"
    )
    assert updated.extra_specs == {"volume_backend_name": "file-a", "tier": "1"}
    await asyncio.to_thread(bs.delete_type_extra_specs, vtype, ["tier"])
    got = await asyncio.to_thread(bs.get_type, vtype.id)
    assert got.extra_specs == {"volume_backend_name": "file-a"}
    await asyncio.to_thread(bs.update_type, vtype, description="silver")
    found = await asyncio.to_thread(bs.find_type, name, ignore_missing=False)
    assert found.description == "silver"
    names = await asyncio.to_thread(lambda: [t.name for t in bs.types()])
    assert {name, "__DEFAULT__"} <= set(names)
    await asyncio.to_thread(bs.delete_type, vtype)
    with pytest.raises(sdk_exc.NotFoundException):
        await asyncio.to_thread(bs.get_type, vtype.id)


async def test_sdk_attachments_and_quota_sets(system: System, sdk: Sdk) -> None:
    bs = sdk.bs
    volume = await available(bs)
    server = str(uuid.uuid4())
    # the Attachment resource calls it ``instance`` (the proxy docstring says instance_id)
    attachment = await asyncio.to_thread(bs.create_attachment, volume, instance=server)
    assert (attachment.status, attachment.instance) == ("reserved", server)
    connector = {"host": "compute-2", "mountpoint": "/dev/vdd", "initiator": "iqn.y"}
    updated = await asyncio.to_thread(bs.update_attachment, attachment, connector=connector)
    assert updated.connection_info["driver_volume_type"] == "local"
    assert await asyncio.to_thread(bs.complete_attachment, attachment) is None
    assert (await status_is(bs, volume.id, "in-use")).attachments[0]["server_id"] == server
    shown = await asyncio.to_thread(bs.get_attachment, attachment.id)
    assert (shown.status, shown.volume_id) == ("attached", volume.id)
    listed = await asyncio.to_thread(lambda: [a.id for a in bs.attachments()])
    assert attachment.id in listed
    await asyncio.to_thread(bs.delete_attachment, attachment)
    assert (await status_is(bs, volume.id, "available")).attachments == []

    defaults = await asyncio.to_thread(bs.get_quota_set_defaults, sdk.project_id)
    assert (defaults.volumes, defaults.gigabytes, defaults.snapshots) == (10, 1000, 10)
    usage = await asyncio.to_thread(bs.get_quota_set, sdk.project_id, usage=True)
    assert usage.usage["volumes"] == 1
    await asyncio.to_thread(bs.update_quota_set, sdk.project_id, volumes=3)
    assert (await asyncio.to_thread(bs.get_quota_set, sdk.project_id)).volumes == 3
    await asyncio.to_thread(bs.revert_quota_set, sdk.project_id)
    assert (await asyncio.to_thread(bs.get_quota_set, sdk.project_id)).volumes == 10


async def test_sdk_limits(sdk: Sdk) -> None:
    bs = sdk.bs
    await available(bs, 2)
    limits = await asyncio.to_thread(bs.get_limits)
    assert limits.absolute.total_volumes_used >= 1
    assert limits.absolute.total_gigabytes_used >= 2
    assert limits.absolute.max_total_volumes >= 1
    assert limits.rate == []
