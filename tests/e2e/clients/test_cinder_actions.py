"""An unmodified python-cinderclient drives the asynchronous volume actions (migrate and
its completion, retype, revert, upload to image, unmanage) and force detach, and reads
each result back through its own calls and on the backend."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cinderclient import exceptions as cinder_exc

from tests.e2e.clients.support import Cinder, cinder_at, cinder_status, until
from tests.e2e.conftest import System
from tests.helpers.cinder import other_backend
from tests.helpers.files import read_at, write_at

pytestmark = pytest.mark.parametrize("cinder", ["project-in-url"], indirect=True)

HOST = "os-vol-host-attr:host"


async def available(c: Any, size: int = 1, **fields: Any) -> Any:
    created = await asyncio.to_thread(c.volumes.create, size, **fields)
    return await until(lambda: c.volumes.get(created.id), lambda v: v.status == "available")


def settled(v: Any) -> bool:
    return v.status not in ("creating", "retyping", "maintenance") and (
        v.migration_status in (None, "success", "error")
    )


async def test_cinderclient_migrates_and_completes(system: System, cinder: Cinder) -> None:
    c = cinder.client
    volume = await available(c, 1)
    source = getattr(volume, HOST)
    old_path = system.driver.volume_path(volume.id, source)
    await asyncio.to_thread(write_at, old_path, 4096, b"migrated bytes")
    target = other_backend(system, source)

    resp, body = await asyncio.to_thread(c.volumes.migrate_volume, volume, target, False, True)
    assert (resp.status_code, body) == (202, None)
    moved = await until(lambda: c.volumes.get(volume.id), settled)
    assert (moved.status, moved.migration_status) == ("available", "success")
    assert getattr(moved, HOST).startswith(f"{target}#")
    new_path = system.driver.volume_path(volume.id, getattr(moved, HOST))
    assert await asyncio.to_thread(read_at, new_path, 4096, 14) == b"migrated bytes"
    await until(lambda: old_path.exists(), lambda exists: not exists)

    # 3.16: a cluster instead of a host; we have no clusters, so Cinder's 400.
    with pytest.raises(cinder_exc.BadRequest) as cluster:
        await asyncio.to_thread(c.volumes.migrate_volume, moved, None, False, False, "c1@x")
    assert cluster.value.message == "Invalid host: No available service named 'c1@x'"
    assert (await asyncio.to_thread(c.volumes.get, volume.id)).migration_status == "success"

    # Completion (what Nova calls after swapping): neither volume mid-migration → the new
    # id is kept; a finished migration is not a destination of this one → 400.
    other = await available(c, 1)
    fresh = await available(c, 1)
    saved = await asyncio.to_thread(c.volumes.migrate_volume_completion, other, fresh, False)
    assert dict(saved) == {"save_volume_id": fresh.id}
    with pytest.raises(cinder_exc.BadRequest) as not_mid:
        await asyncio.to_thread(c.volumes.migrate_volume_completion, moved, fresh, False)
    assert not_mid.value.message == "Invalid volume: Destination volume not mid-migration."


async def test_cinderclient_retypes_in_place_and_on_demand(system: System, cinder: Cinder) -> None:
    c = cinder.client
    on_a, on_b = [
        await asyncio.to_thread(c.volume_types.create, f"cc-{backend}-{uuid.uuid4().hex[:6]}")
        for backend in ("a", "b")
    ]
    await asyncio.to_thread(on_a.set_keys, {"volume_backend_name": "file-a"})
    await asyncio.to_thread(on_b.set_keys, {"volume_backend_name": "file-b"})
    plain = await asyncio.to_thread(c.volume_types.create, f"cc-plain-{uuid.uuid4().hex[:6]}")
    volume = await available(c, 1, volume_type=on_a.name)
    host = getattr(volume, HOST)
    assert "@file-a#" in host

    # The pool also suits a type naming no backend: the type switches in place.
    resp, _ = await asyncio.to_thread(c.volumes.retype, volume, plain.name, "never")
    assert resp.status_code == 202
    done = await until(lambda: c.volumes.get(volume.id), lambda v: v.status != "retyping")
    assert (done.status, done.volume_type, getattr(done, HOST)) == ("available", plain.name, host)

    # Another backend with policy never: refused by the saga, nothing changes.
    await asyncio.to_thread(c.volumes.retype, volume, on_b.id, "never")
    kept = await until(lambda: c.volumes.get(volume.id), lambda v: v.status != "retyping")
    assert (kept.status, kept.volume_type, getattr(kept, HOST)) == ("available", plain.name, host)

    # on-demand: the data moves to file-b, the old copy goes.
    await asyncio.to_thread(c.volumes.retype, volume, on_b.name, "on-demand")
    moved = await until(lambda: c.volumes.get(volume.id), lambda v: v.status != "retyping")
    assert (moved.status, moved.volume_type) == ("available", on_b.name)
    assert "@file-b#" in getattr(moved, HOST)
    old = system.driver.volume_path(volume.id, host)
    await until(lambda: old.exists(), lambda exists: not exists)


async def test_cinderclient_reverts_to_the_latest_snapshot(system: System, cinder: Cinder) -> None:
    c = cinder.client
    volume = await available(c, 1)
    path = system.driver.volume_path(volume.id, getattr(volume, HOST))
    await asyncio.to_thread(write_at, path, 0, b"before snapshot")
    snap = await asyncio.to_thread(c.volume_snapshots.create, volume.id, name="cc-snap")
    await until(lambda: c.volume_snapshots.get(snap.id), lambda s: s.status == "available")
    await asyncio.to_thread(write_at, path, 0, b"after snapshot!")

    with pytest.raises(cinder_exc.VersionNotFoundForAPIMethod):
        await asyncio.to_thread(cinder_at(cinder, "3.39").volumes.revert_to_snapshot, volume, snap)
    resp, _ = await asyncio.to_thread(c.volumes.revert_to_snapshot, volume, snap)
    assert resp.status_code == 202
    await until(lambda: c.volumes.get(volume.id), lambda v: v.status == "available")
    assert await asyncio.to_thread(read_at, path, 0, 15) == b"before snapshot"
    again = await asyncio.to_thread(c.volume_snapshots.get, snap.id)
    assert again.status == "available"


async def test_cinderclient_uploads_to_an_image(system: System, cinder: Cinder) -> None:
    c = cinder.client
    volume = await available(c, 1)
    path = system.driver.volume_path(volume.id, getattr(volume, HOST))
    await asyncio.to_thread(write_at, path, 2**20, b"image bytes")
    # 3.1 adds visibility and protected to the request.
    resp, body = await asyncio.to_thread(
        c.volumes.upload_to_image, volume, False, "cc-image", "bare", "raw", "private", False
    )
    assert resp.status_code == 202
    answer = body["os-volume_upload_image"]
    assert (answer["status"], answer["image_name"], answer["visibility"]) == (
        "uploading",
        "cc-image",
        "private",
    )
    assert answer["protected"] is False
    await until(lambda: c.volumes.get(volume.id), lambda v: v.status == "available")
    image = Path(system.settings.data_dir) / "images" / f"{answer['image_id']}.img"
    assert await asyncio.to_thread(read_at, image, 2**20, 11) == b"image bytes"
    record = json.loads(await asyncio.to_thread(image.with_suffix(".json").read_text))
    assert (record["status"], record["name"], record["disk_format"]) == (
        "active",
        "cc-image",
        "raw",
    )


async def test_cinderclient_unmanages(system: System, cinder: Cinder) -> None:
    c = cinder.client
    volume = await available(c, 1)
    path = system.driver.volume_path(volume.id, getattr(volume, HOST))
    resp, body = await asyncio.to_thread(c.volumes.unmanage, volume)
    assert (resp.status_code, body) == (202, None)
    await until(lambda: cinder_status(c, volume.id), lambda s: s == "gone")
    assert await asyncio.to_thread(path.exists)  # the data stays on the backend
    quota = await asyncio.to_thread(c.quotas.get, cinder.project_id, usage=True)
    assert quota.volumes["in_use"] == 0


async def test_cinderclient_force_detaches(system: System, cinder: Cinder) -> None:
    """python-cinderclient 9 has no method for os-force_detach (the CLI dropped it); its
    manager's own action call sends exactly what the removed method did."""
    c = cinder.client
    volume = await available(c, 1)
    await asyncio.to_thread(c.volumes.attach, volume, str(uuid.uuid4()), "/dev/vdc")
    volume = await until(lambda: c.volumes.get(volume.id), lambda v: v.status == "in-use")
    attachment_id = volume.attachments[0]["attachment_id"]
    connector = {"host": "node-1", "initiator": "iqn.x"}
    resp, body = await asyncio.to_thread(
        c.volumes._action,
        "os-force_detach",
        volume,
        {"attachment_id": attachment_id, "connector": connector},
    )
    assert (resp.status_code, body) == (202, None)
    done = await until(lambda: c.volumes.get(volume.id), lambda v: v.status == "available")
    assert done.attachments == []


async def test_cinderclient_reimages_a_volume(system: System, cinder: Cinder) -> None:
    """``volumes.reimage`` (3.68): an uploaded image's bytes land on another volume, which
    is bootable afterwards and shows the image's metadata."""
    c = cinder.client
    source = await available(c, 1)
    await asyncio.to_thread(
        write_at, system.driver.volume_path(source.id, getattr(source, HOST)), 4096, b"new root"
    )
    _, body = await asyncio.to_thread(
        c.volumes.upload_to_image, source, False, "cc-rebuild", "bare", "raw", "private", False
    )
    image_id = body["os-volume_upload_image"]["image_id"]
    await until(lambda: c.volumes.get(source.id), lambda v: v.status == "available")
    target = await available(c, 1)
    path = system.driver.volume_path(target.id, getattr(target, HOST))
    await asyncio.to_thread(write_at, path, 4096, b"old root")
    v368 = cinder_at(cinder, "3.68")

    resp, _ = await asyncio.to_thread(v368.volumes.reimage, target.id, image_id, False)

    assert resp.status_code == 202
    done = await until(lambda: c.volumes.get(target.id), lambda v: v.status != "downloading")
    assert (done.status, done.bootable) == ("available", "true")
    assert done.volume_image_metadata["image_id"] == image_id
    assert await asyncio.to_thread(read_at, path, 4096, 8) == b"new root"
