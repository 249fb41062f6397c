"""Where each saga of tests/integration/test_saga_crashes.py starts: the aggregate brought,
through the same commands the API uses, to the event a saga worker reacts to (nothing is run
by a worker yet). Volumes are 1 GiB real files in pool A of two backends, with MARK written
in them."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.volume import Volume
from cinderblock.images.local import LocalImageStore
from cinderblock.images.port import ImageSpec
from cinderblock.store.volumes import Caller
from tests.helpers.rigs import SagaRig

GIB = 2**30
POOL_A, POOL_B = "h@file-a#pool", "h@file-b#pool"
POOLS = (f"{POOL_A}:100", f"{POOL_B}:100")
MARK = b"written before the saga"


def allow(_: Any) -> None:
    return None


@dataclass
class Started:
    """A saga waiting for a worker: the volume, the aggregate whose events end the saga,
    and the first argument of the step the worker dies after."""

    volume_id: str
    caller: Caller
    aggregate_id: str
    subject: str
    host: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


async def load(rig: SagaRig, vid: str) -> Volume:
    volume = await rig.volumes.store.load(UUID(vid), Volume)
    assert volume is not None
    return volume


async def snapshot(rig: SagaRig, sid: str) -> Snapshot:
    snap = await rig.volumes.store.load(UUID(sid), Snapshot)
    assert snap is not None
    return snap


def write_mark(path: Path, data: bytes = MARK, offset: int = 4096) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def read_mark(path: Path, size: int = len(MARK), offset: int = 4096) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(size)


async def available(rig: SagaRig, location: str = POOL_A) -> tuple[str, Caller, str]:
    """A 1 GiB available volume on a real file in ``location``, with MARK written."""
    vid, caller = await rig.creating_volume()
    host = await rig.files.create_volume(str(vid), 1, location=location, step_key="setup")
    await rig.volumes.complete_create(str(vid), host, meta={})
    await asyncio.to_thread(write_mark, rig.files.volume_path(str(vid), host))
    return str(vid), caller, host


async def start_create(rig: SagaRig) -> Started:
    vid, caller = await rig.creating_volume()
    return Started(str(vid), caller, str(vid), str(vid))


async def start_extend(rig: SagaRig) -> Started:
    volume = await rig.extending_volume()
    return Started(volume.vid, Caller("u", volume.project_id), volume.vid, volume.vid, volume.host)


async def start_delete(rig: SagaRig) -> Started:
    vid, caller, host = await available(rig)
    await rig.volumes.delete_volume(caller, vid, meta={})
    return Started(vid, caller, vid, vid, host)


async def start_unmanage(rig: SagaRig) -> Started:
    vid, caller, host = await available(rig)
    await rig.volumes.unmanage_volume(caller, vid, meta={})
    return Started(vid, caller, vid, vid, host)


async def start_migrate(rig: SagaRig) -> Started:
    vid, caller, host = await available(rig)

    def start(v: Volume) -> None:
        v.start_migration("h@file-b", force_host_copy=False, lock_volume=False)

    await rig.volumes.act(caller, vid, start, meta={})
    return Started(vid, caller, vid, vid, host)


async def start_retype(rig: SagaRig) -> Started:
    vid, caller, host = await available(rig)
    _, type_id = await rig.volumes.create_type(
        name=f"on-b-{uuid.uuid4().hex[:8]}",
        description=None,
        is_public=True,
        extra_specs={"volume_backend_name": "file-b"},
        meta={},
    )
    new_type = await rig.volumes.find_type(type_id)
    await rig.volumes.retype_volume(
        caller,
        vid,
        new_type,
        migration_policy="on-demand",
        reservation_id=str(uuid.uuid4()),
        meta={},
        authorize=allow,
    )
    return Started(vid, caller, vid, vid, host, {"type_id": type_id})


async def snapshotted(rig: SagaRig) -> tuple[str, Caller, str, str]:
    """An available volume with an available snapshot of it (taken while MARK was there)."""
    vid, caller, host = await available(rig)
    sid = uuid.uuid4()
    await rig.volumes.create_snapshot(
        caller,
        vid,
        sid,
        name=None,
        description=None,
        metadata={},
        force=False,
        in_use_ok=False,
        meta={},
        authorize=allow,
    )
    await rig.files.create_snapshot(vid, str(sid), host, step_key="setup")
    await rig.volumes.settle_snapshot(str(sid), Snapshot.complete_create, meta={})
    return vid, caller, host, str(sid)


async def start_revert(rig: SagaRig) -> Started:
    vid, caller, host, sid = await snapshotted(rig)
    await asyncio.to_thread(write_mark, rig.files.volume_path(vid, host), b"X" * len(MARK))
    await rig.volumes.revert_volume(caller, vid, sid, meta={}, authorize=allow)
    return Started(vid, caller, vid, vid, host, {"snapshot_id": sid})


async def creating_from(rig: SagaRig, caller: Caller, host: str, **source: str | None) -> str:
    """A 2 GiB volume in ``creating`` from a 1 GiB source (a snapshot or a volume) in
    ``host``: the create saga copies and grows it."""
    vid = uuid.uuid4()
    await rig.volumes.create_volume(
        caller,
        vid,
        meta={},
        source={"snapshot_id": None, "source_volid": None, **source, "source_host": host},
        name=None,
        description=None,
        size_gb=2,
        metadata={},
        bootable=False,
        multiattach=False,
    )
    return str(vid)


async def start_create_from_snapshot(rig: SagaRig) -> Started:
    _, caller, host, sid = await snapshotted(rig)
    vid = await creating_from(rig, caller, host, snapshot_id=sid)
    return Started(vid, caller, vid, vid, host, {"source": rig.files.snapshot_path(sid, host)})


async def start_clone(rig: SagaRig) -> Started:
    source, caller, host = await available(rig)
    vid = await creating_from(rig, caller, host, source_volid=source)
    return Started(vid, caller, vid, vid, host, {"source": rig.files.volume_path(source, host)})


async def start_snapshot_create(rig: SagaRig) -> Started:
    vid, caller, host = await available(rig)
    sid = uuid.uuid4()
    await rig.volumes.create_snapshot(
        caller,
        vid,
        sid,
        name=None,
        description=None,
        metadata={},
        force=False,
        in_use_ok=False,
        meta={},
        authorize=allow,
    )
    return Started(vid, caller, str(sid), vid, host)


async def start_snapshot_delete(rig: SagaRig) -> Started:
    vid, caller, host, sid = await snapshotted(rig)
    await rig.volumes.snapshot_act(caller, sid, Snapshot.request_delete, meta={}, authorize=allow)
    return Started(vid, caller, sid, sid, host)


async def start_upload(rig: SagaRig) -> Started:
    vid, caller, host = await available(rig)
    image_id = str(uuid.uuid4())
    spec = ImageSpec(
        image_id=image_id,
        name="crash-image",
        disk_format="raw",
        container_format="bare",
        visibility="private",
        protected=False,
        min_disk=1,
        properties={"volume_id": vid},
    )
    await images(rig).create(spec, request_id=None)

    def start(v: Volume) -> None:
        v.request_upload(
            image_id,
            image_name="crash-image",
            disk_format="raw",
            container_format="bare",
            visibility="private",
            protected=False,
            force=False,
        )

    await rig.volumes.act(caller, vid, start, meta={})
    return Started(vid, caller, vid, image_id, host)


def images(rig: SagaRig) -> LocalImageStore:
    return LocalImageStore(Path(rig.settings.data_dir) / "images")
