"""Every saga, crashed at its worst moment: the worker is killed after the driver step did
its work and before the completion event is recorded (the message is never acked). A new
worker gets the redelivery, runs the step again (which finds its work done), and records
the completion exactly once: the aggregate reaches its final status, the step's effect is
there once (bytes, files, and pool accounting equal to a fresh scan of the disk), and no
compensation is recorded. (At the end, the reimage saga's compensations: an image gone
before the worker ran, an image service that stays away; and a create from an image whose
image service stays away.)

The tests get a database of their own, so each test's relay (a new stream) replays only
these tests' events, all settled, and the pools hold only what these tests put there."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import asyncpg
import pytest
import pytest_asyncio

from cinderblock.bus.jetstream import run_consumer
from cinderblock.config.settings import Settings
from cinderblock.domain import exports
from cinderblock.domain.snapshot import Snapshot, SnapshotStatus
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.drivers.base import ExportSpec, PoolConfig
from cinderblock.drivers.copying import content_digest
from cinderblock.drivers.file import FileDriver
from cinderblock.images.port import ImageServiceError, ImageSpec
from cinderblock.runtime.infra import create_schemas
from cinderblock.sagas.run import SagaRunner
from cinderblock.store.volumes import Caller
from tests.helpers.driver_wrappers import Counting, DiesAfter
from tests.helpers.rigs import SagaRig, open_saga_rig
from tests.helpers.saga_starts import (
    GIB,
    MARK,
    POOL_A,
    POOL_B,
    POOLS,
    Started,
    available,
    images,
    load,
    read_mark,
    snapshot,
    start_clone,
    start_create,
    start_create_from_snapshot,
    start_delete,
    start_extend,
    start_migrate,
    start_retype,
    start_revert,
    start_snapshot_create,
    start_snapshot_delete,
    start_unmanage,
    start_upload,
)
from tests.helpers.servers import Servers, fresh_database

IMAGE_BYTES = b"reimaged root disk" * 400  # 7200 bytes: the image covers MARK's offset


async def start_reimage(rig: SagaRig) -> Started:
    """An available volume (MARK in it) and an active image of IMAGE_BYTES; the reimage
    requested (the saga writes the image through the driver's ``reimage_volume``)."""
    vid, caller, host = await available(rig)
    image_id = str(uuid.uuid4())
    store = images(rig)
    spec = ImageSpec(image_id, "rebuild", "raw", "bare", "private", False, 0)
    await store.create(spec, request_id=None)
    source = Path(rig.settings.data_dir) / f"{image_id}.src"
    await asyncio.to_thread(source.write_bytes, IMAGE_BYTES)
    await store.upload(image_id, source, size=len(IMAGE_BYTES))
    image = await store.get(image_id)
    assert image is not None
    await rig.volumes.act(
        caller, vid, lambda v: v.request_reimage(image, reimage_reserved=False), meta={}
    )
    return Started(vid, caller, vid, vid, host, {"image_id": image_id})


async def active_image(rig: SagaRig) -> dict[str, object]:
    """An active image of IMAGE_BYTES in the local image store; its record."""
    image_id = str(uuid.uuid4())
    store = images(rig)
    spec = ImageSpec(image_id, "rebuild", "raw", "bare", "private", False, 0)
    await store.create(spec, request_id=None)
    source = Path(rig.settings.data_dir) / f"{image_id}.src"
    await asyncio.to_thread(source.write_bytes, IMAGE_BYTES)
    await store.upload(image_id, source, size=len(IMAGE_BYTES))
    image = await store.get(image_id)
    assert image is not None
    return image


async def start_create_from_image(rig: SagaRig) -> Started:
    """A 1 GiB volume created from an image (ImageSourceSet in its create's append): the
    create saga makes its file, then writes the image through ``reimage_volume``."""
    image = await active_image(rig)
    vid = uuid.uuid4()
    caller = Caller("u", uuid.uuid4().hex)
    await rig.volumes.create_volume(
        caller,
        vid,
        meta={},
        image=image,
        name=None,
        description=None,
        size_gb=1,
        metadata={},
        bootable=False,
        multiattach=False,
    )
    return Started(str(vid), caller, str(vid), str(vid), facts={"image_id": image["id"]})


CONNECTOR = {"host": "compute-1", "mountpoint": "/dev/vdb", "initiator": "iqn.1"}


async def start_attach(rig: SagaRig) -> Started:
    """An available volume with a reserved attachment whose connector arrived: the export
    saga exports it (``initialize_connection``) and connects the attachment."""
    vid, caller, host = await available(rig)
    aid = str(uuid.uuid4())
    await rig.volumes.act(
        caller, vid, lambda v: v.create_attachment(aid, instance_uuid=None, mode=None), meta={}
    )
    await rig.volumes.act(
        caller, vid, lambda v: v.request_attachment_export(aid, CONNECTOR), meta={}
    )
    return Started(vid, caller, vid, vid, host, {"attachment_id": aid})


async def start_detach(rig: SagaRig) -> Started:
    """An attachment exported and connected (as the export saga leaves it); its delete
    asked for: the saga removes the export (``terminate_connection``), then detaches."""
    s = await start_attach(rig)
    aid, host = s.facts["attachment_id"], s.host or ""
    volume = await load(rig, s.volume_id)
    (request,) = exports.export_requests(volume)
    spec = ExportSpec(aid, CONNECTOR)
    info = await rig.files.initialize_connection(s.volume_id, host, spec, step_key="setup")
    await rig.volumes.settle_saga_step(
        s.volume_id, lambda v: v.complete_export(request, info), meta={}
    )
    await rig.volumes.act(
        s.caller, s.volume_id, lambda v: v.request_attachment_delete(aid), meta={}
    )
    return s


async def exported(rig: SagaRig, s: Started) -> None:
    volume = await load(rig, s.volume_id)
    aid = s.facts["attachment_id"]
    assert volume.attachments[aid]["attach_status"] == "attaching"
    assert volume.attachments[aid]["connection_info"]["data"]["attachment_id"] == aid
    on_disk = rig.files.exports(s.volume_id, s.host or "")
    assert [e["export_id"] for e in on_disk] == [aid]  # exported once


async def unexported(rig: SagaRig, s: Started) -> None:
    volume = await load(rig, s.volume_id)
    assert (volume.status, volume.attachments) == (Status.AVAILABLE, {})
    assert rig.files.exports(s.volume_id, s.host or "") == []
    assert exports.registry(volume) == {}


W = TypeVar("W", DiesAfter, Counting)


@pytest_asyncio.fixture(scope="module")
async def pool(servers: Servers) -> AsyncIterator[asyncpg.Pool]:
    """This module's own database (overrides the integration tests' shared one)."""
    async with fresh_database(servers) as url:
        p = await asyncpg.create_pool(url, min_size=1, max_size=8)
        try:
            await create_schemas(p)
            yield p
        finally:
            await p.close()


# --- what done looks like, saga by saga ---------------------------------------------------


async def gone(path: Path) -> bool:
    return not await asyncio.to_thread(path.exists)


async def digest(path: Path) -> str:
    return await asyncio.to_thread(content_digest, path)


async def until_true(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` (a few milliseconds apart) for at most 15 s."""
    deadline = asyncio.get_running_loop().time() + 15
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached in 15 s: {what}")
        await asyncio.sleep(0.02)


async def created(rig: SagaRig, s: Started) -> None:
    volume = await load(rig, s.volume_id)
    assert volume.status == Status.AVAILABLE
    files = list(rig.files.root.glob(f"*/*/volume-{s.volume_id}.img"))
    assert files == [rig.files.volume_path(s.volume_id, volume.host or "")]
    assert files[0].stat().st_size == GIB


async def created_from_source(rig: SagaRig, s: Started) -> None:
    """One 2 GiB file in the source's pool: the source's GiB (MARK in it), then zeros."""
    volume = await load(rig, s.volume_id)
    assert (volume.status, volume.host) == (Status.AVAILABLE, s.host)
    files = list(rig.files.root.glob(f"*/*/volume-{s.volume_id}.img"))
    assert files == [rig.files.volume_path(s.volume_id, s.host or "")]
    assert files[0].stat().st_size == 2 * GIB
    assert await asyncio.to_thread(read_mark, files[0]) == MARK
    source = s.facts["source"]
    assert await asyncio.to_thread(read_mark, files[0], 64, GIB - 32) == (
        await asyncio.to_thread(read_mark, source, 32, GIB - 32) + bytes(32)
    )


async def extended(rig: SagaRig, s: Started) -> None:
    volume = await load(rig, s.volume_id)
    assert (volume.status, volume.size_gb) == (Status.AVAILABLE, 2)
    assert rig.files.volume_path(s.volume_id, s.host or "").stat().st_size == 2 * GIB


async def deleted(rig: SagaRig, s: Started) -> None:
    assert (await load(rig, s.volume_id)).status == Status.DELETED
    assert await gone(rig.files.volume_path(s.volume_id, s.host or ""))


async def unmanaged(rig: SagaRig, s: Started) -> None:
    assert (await load(rig, s.volume_id)).status == Status.DELETED
    path = rig.files.volume_path(s.volume_id, s.host or "")
    assert await asyncio.to_thread(read_mark, path) == MARK  # left on the backend, as it was


async def moved(rig: SagaRig, s: Started) -> Volume:
    """The volume lives in pool B with its bytes; the copy in pool A is removed (by the
    reaction to the completion event, so it is waited for)."""
    volume = await load(rig, s.volume_id)
    assert (volume.status, volume.host) == (Status.AVAILABLE, POOL_B)
    assert await asyncio.to_thread(read_mark, rig.files.volume_path(s.volume_id, POOL_B)) == MARK
    old = rig.files.volume_path(s.volume_id, POOL_A)
    await until_true(lambda: gone(old), f"old copy {old} removed")
    return volume


async def migrated(rig: SagaRig, s: Started) -> None:
    volume = await moved(rig, s)
    assert volume.migration_status == "success"


async def retyped(rig: SagaRig, s: Started) -> None:
    volume = await moved(rig, s)
    assert volume.volume_type_id == s.facts["type_id"]
    assert volume.pending_retype is None


async def reverted(rig: SagaRig, s: Started) -> None:
    assert (await load(rig, s.volume_id)).status == Status.AVAILABLE
    sid = s.facts["snapshot_id"]
    assert (await snapshot(rig, sid)).status == SnapshotStatus.AVAILABLE
    path = rig.files.volume_path(s.volume_id, s.host or "")
    assert await asyncio.to_thread(read_mark, path) == MARK
    assert await digest(path) == await digest(rig.files.snapshot_path(sid, s.host or ""))


async def snapshot_created(rig: SagaRig, s: Started) -> None:
    assert (await snapshot(rig, s.aggregate_id)).status == SnapshotStatus.AVAILABLE
    copy = rig.files.snapshot_path(s.aggregate_id, s.host or "")
    assert await digest(copy) == await digest(rig.files.volume_path(s.volume_id, s.host or ""))


async def snapshot_deleted(rig: SagaRig, s: Started) -> None:
    assert (await snapshot(rig, s.aggregate_id)).is_deleted
    assert await gone(rig.files.snapshot_path(s.aggregate_id, s.host or ""))
    assert (await load(rig, s.volume_id)).status == Status.AVAILABLE


async def uploaded(rig: SagaRig, s: Started) -> None:
    assert (await load(rig, s.volume_id)).status == Status.AVAILABLE
    store = images(rig)
    record = await store.get(s.subject)
    assert record is not None
    assert record["status"] == "active"
    image = store.image_path(s.subject)
    assert await digest(image) == await digest(rig.files.volume_path(s.volume_id, s.host or ""))


async def created_from_image(rig: SagaRig, s: Started) -> None:
    volume = await load(rig, s.volume_id)
    assert (volume.status, volume.bootable) == (Status.AVAILABLE, True)
    assert volume.image_metadata["image_id"] == s.facts["image_id"]
    files = list(rig.files.root.glob(f"*/*/volume-{s.volume_id}.img"))
    assert files == [rig.files.volume_path(s.volume_id, volume.host or "")]
    size = len(IMAGE_BYTES)
    assert await asyncio.to_thread(read_mark, files[0], size, 0) == IMAGE_BYTES
    assert files[0].stat().st_size == GIB
    assert [p.name for p in files[0].parent.iterdir() if p.name.startswith(".")] == []


async def reimaged(rig: SagaRig, s: Started) -> None:
    volume = await load(rig, s.volume_id)
    assert (volume.status, volume.bootable) == (Status.AVAILABLE, True)
    assert volume.image_metadata["image_id"] == s.facts["image_id"]
    path = rig.files.volume_path(s.volume_id, s.host or "")
    size = len(IMAGE_BYTES)
    assert await asyncio.to_thread(read_mark, path, size, 0) == IMAGE_BYTES
    assert await asyncio.to_thread(read_mark, path, 64, size) == bytes(64)
    assert path.stat().st_size == GIB
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


@dataclass(frozen=True)
class Case:
    """One saga: how it starts, the step (a driver method, or the image service's for
    upload) the worker dies after, when it has settled, what it must look like then, and
    the completion event recorded exactly once."""

    name: str
    start: Callable[[SagaRig], Awaitable[Started]]
    step: str
    settled: Callable[[Volume, Snapshot | None], bool]
    check: Callable[[SagaRig, Started], Awaitable[None]]
    completion: str
    on_images: bool = False


# Shorter than the longest step (the local image store hashes every byte of an upload,
# holes too: about 1 s for 1 GiB): the worker's progress reports keep a live step's
# message from being redelivered, while a killed worker's message comes back in ~1 s.
ACK_WAIT = 1.0


def volume_left(*transient: Status) -> Callable[[Volume, Snapshot | None], bool]:
    return lambda v, _: v.status not in transient


def snapshot_left(transient: str) -> Callable[[Volume, Snapshot | None], bool]:
    return lambda _, snap: snap is not None and snap.status != transient


CASES = [
    Case(
        "create",
        start_create,
        "create_volume",
        volume_left(Status.CREATING),
        created,
        "Volume.CreateCompleted",
    ),
    Case(
        "create-from-snapshot",
        start_create_from_snapshot,
        "create_volume_from_snapshot",
        volume_left(Status.CREATING),
        created_from_source,
        "Volume.CreateCompleted",
    ),
    Case(
        "clone",
        start_clone,
        "create_cloned_volume",
        volume_left(Status.CREATING),
        created_from_source,
        "Volume.CreateCompleted",
    ),
    Case(
        "create-from-image",
        start_create_from_image,
        "reimage_volume",
        volume_left(Status.CREATING),
        created_from_image,
        "Volume.CreateCompleted",
    ),
    Case(
        "extend",
        start_extend,
        "extend_volume",
        volume_left(Status.EXTENDING),
        extended,
        "Volume.Extended",
    ),
    Case(
        "delete",
        start_delete,
        "delete_volume",
        volume_left(Status.DELETING),
        deleted,
        "Volume.Deleted",
    ),
    Case(
        "unmanage",
        start_unmanage,
        "unmanage_volume",
        volume_left(Status.UNMANAGING),
        unmanaged,
        "Volume.Unmanaged",
    ),
    Case(
        "migrate",
        start_migrate,
        "migrate_volume",
        lambda v, _: v.migration_status in ("success", "error"),
        migrated,
        "Volume.MigrationCompleted",
    ),
    Case(
        "retype-on-demand",
        start_retype,
        "migrate_volume",
        volume_left(Status.RETYPING),
        retyped,
        "Volume.Retyped",
    ),
    Case(
        "revert",
        start_revert,
        "revert_to_snapshot",
        volume_left(Status.REVERTING),
        reverted,
        "Volume.Reverted",
    ),
    Case(
        "upload",
        start_upload,
        "upload",
        volume_left(Status.UPLOADING),
        uploaded,
        "Volume.Uploaded",
        on_images=True,
    ),
    Case(
        "reimage",
        start_reimage,
        "reimage_volume",
        volume_left(Status.DOWNLOADING),
        reimaged,
        "Volume.Reimaged",
    ),
    Case(
        "attach",
        start_attach,
        "initialize_connection",
        lambda v, _: not exports.export_requests(v),
        exported,
        "Volume.ExportCreated",
    ),
    Case(
        "detach",
        start_detach,
        "terminate_connection",
        lambda v, _: not exports.unexport_requests(v),
        unexported,
        "Volume.ExportsRemoved",
    ),
    Case(
        "snapshot-create",
        start_snapshot_create,
        "create_snapshot",
        snapshot_left(SnapshotStatus.CREATING),
        snapshot_created,
        "Snapshot.CreateCompleted",
    ),
    Case(
        "snapshot-delete",
        start_snapshot_delete,
        "delete_snapshot",
        snapshot_left(SnapshotStatus.DELETING),
        snapshot_deleted,
        "Snapshot.Deleted",
    ),
]


# --- the test -----------------------------------------------------------------------------


async def is_settled(rig: SagaRig, case: Case, s: Started) -> bool:
    volume = await load(rig, s.volume_id)
    snap = None
    if s.aggregate_id != s.volume_id:
        snap = await snapshot(rig, s.aggregate_id)
    return case.settled(volume, snap)


async def topics(pool: asyncpg.Pool, aggregate_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT topic FROM events WHERE originator_id = $1 ORDER BY originator_version",
        UUID(aggregate_id),
    )
    return [r["topic"].rpartition(":")[2] for r in rows]


def worker(rig: SagaRig, pool: asyncpg.Pool, case: Case, wrapper: type[W], subject: str) -> W:
    """Start a saga worker whose driver (or image service) is wrapped by ``wrapper`` for
    the case's step and ``subject``; return the wrapper (its task is ``rig.tasks[-1]``)."""
    if case.on_images:
        wrapped = wrapper(images(rig), case.step, subject)
        runner = SagaRunner(rig.settings, pool, rig.files, images=wrapped)  # type: ignore[arg-type]
    else:
        wrapped = wrapper(rig.files, case.step, subject)
        runner = SagaRunner(rig.settings, pool, wrapped)  # type: ignore[arg-type]
    rig.start(run_consumer(rig.js, runner.spec, runner.handle, runner.park, asyncio.Event()))
    return wrapped


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_worker_killed_after_the_step_is_finished_once_by_redelivery(
    pool: asyncpg.Pool,
    settings: Settings,
    tmp_path: Path,
    case: Case,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cinderblock.bus.jetstream")
    async with open_saga_rig(pool, settings, tmp_path, POOLS, ACK_WAIT) as rig:
        started = await crash_and_redeliver(rig, pool, case)
    # The redelivery's pickup is logged once, naming the saga's aggregate and volume (the
    # killed worker may have held other messages of the stream too: resumed as well).
    resumed = [
        r
        for r in caplog.records
        if r.getMessage().startswith("resuming ")
        and getattr(r, "aggregate_id", None) == started.aggregate_id
    ]
    assert len(resumed) == 1, [r.getMessage() for r in resumed]
    assert resumed[0].getMessage().endswith(f"{started.aggregate_id} (delivery 2)")
    if started.aggregate_id == started.volume_id:  # a snapshot's events name the snapshot
        assert resumed[0].volume_id == started.volume_id  # type: ignore[attr-defined]
    assert resumed[0].deliveries == 2  # type: ignore[attr-defined]


async def crash_and_redeliver(rig: SagaRig, pool: asyncpg.Pool, case: Case) -> Started:
    # Something else in each pool, so a step that released space twice would show.
    for location in (POOL_A, POOL_B):
        bystander = f"bystander-{uuid.uuid4().hex}"
        await rig.files.create_volume(bystander, 1, location=location, step_key="setup")
    started = await case.start(rig)

    dying = worker(rig, pool, case, DiesAfter, started.subject)
    await asyncio.wait_for(dying.done.wait(), 15)
    first = rig.tasks[-1]
    first.cancel()  # killed between the step and the completion event
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert dying.calls == 1
    assert not await is_settled(rig, case, started)

    counting = worker(rig, pool, case, Counting, started.subject)
    await until_true(lambda: is_settled(rig, case, started), f"{case.name} settled")
    await case.check(rig, started)
    assert counting.calls == 1  # redelivered once; the step found its work done

    recorded = await topics(pool, started.aggregate_id)
    assert recorded.count(case.completion) == 1, recorded
    assert not [t for t in recorded if t.endswith("Failed")], recorded

    async def counted_once() -> bool:
        """The space it took or freed, counted once: the driver's own count equals what a
        fresh driver finds on disk. Waited for, since a follow-up step may still run (a
        retype's removal of the old copy reacts to the completion event)."""
        fresh = FileDriver(rig.files.root, [PoolConfig.parse(p) for p in POOLS])
        return rig.files.pools() == fresh.pools()

    await until_true(counted_once, f"{case.name}: pool space counted once")
    return started


async def test_reimage_of_an_image_gone_meanwhile_fails_once_and_keeps_the_bytes(
    pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    """The image is deleted after the request, before any worker runs: the image service's
    permanent 404 compensates at once (ReimageFailed, ``error``), the volume keeps its bytes
    and the pool its accounting."""
    async with open_saga_rig(pool, settings, tmp_path, POOLS, 1.0) as rig:
        started = await start_reimage(rig)
        await images(rig).delete(started.facts["image_id"])
        counting = worker(rig, pool, reimage_case(), Counting, started.volume_id)

        await until_true(lambda: is_settled(rig, reimage_case(), started), "reimage compensated")

        volume = await load(rig, started.volume_id)
        assert volume.status == Status.ERROR
        recorded = await topics(pool, started.volume_id)
        assert recorded.count("Volume.ReimageFailed") == 1, recorded
        assert "Volume.Reimaged" not in recorded
        path = rig.files.volume_path(started.volume_id, started.host or "")
        assert await asyncio.to_thread(read_mark, path) == MARK
        assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
        fresh = FileDriver(rig.files.root, [PoolConfig.parse(p) for p in POOLS])
        assert rig.files.pools() == fresh.pools()
        assert counting.calls == 1  # the driver step ran; the download inside it failed


async def test_reimage_whose_image_service_stays_away_gives_up_with_error(
    pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    """A retryable image-service error is redelivered; the last delivery compensates."""
    async with open_saga_rig(pool, settings, tmp_path, POOLS, 1.0) as rig:
        started = await start_reimage(rig)
        down = ImageServiceError("503", retryable=True, operation="download", image_id="x")
        failing = Counting(rig.files, "reimage_volume", started.volume_id, failure=down)
        runner = SagaRunner(rig.settings, pool, failing)  # type: ignore[arg-type]
        rig.start(run_consumer(rig.js, runner.spec, runner.handle, runner.park, asyncio.Event()))

        await until_true(lambda: is_settled(rig, reimage_case(), started), "reimage gave up")

        assert (await load(rig, started.volume_id)).status == Status.ERROR
        assert failing.calls == rig.settings.saga_max_deliver
        recorded = await topics(pool, started.volume_id)
        assert recorded.count("Volume.ReimageFailed") == 1, recorded


def reimage_case() -> Case:
    return next(c for c in CASES if c.name == "reimage")


async def test_create_from_an_image_whose_service_stays_away_gives_up_with_error(
    pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    """A retryable image-service error is redelivered; the last delivery fails the create
    (``error``) and removes the new volume's file again."""
    async with open_saga_rig(pool, settings, tmp_path, POOLS, 1.0) as rig:
        started = await start_create_from_image(rig)
        down = ImageServiceError("503", retryable=True, operation="download", image_id="x")
        failing = Counting(rig.files, "reimage_volume", started.volume_id, failure=down)
        runner = SagaRunner(rig.settings, pool, failing)  # type: ignore[arg-type]
        rig.start(run_consumer(rig.js, runner.spec, runner.handle, runner.park, asyncio.Event()))
        case = next(c for c in CASES if c.name == "create-from-image")

        await until_true(lambda: is_settled(rig, case, started), "create gave up")

        assert (await load(rig, started.volume_id)).status == Status.ERROR
        assert failing.calls == rig.settings.saga_max_deliver
        recorded = await topics(pool, started.volume_id)
        assert recorded.count("Volume.CreateFailed") == 1, recorded
        assert list(rig.files.root.glob(f"*/*/volume-{started.volume_id}.img")) == []
        fresh = FileDriver(rig.files.root, [PoolConfig.parse(p) for p in POOLS])
        assert rig.files.pools() == fresh.pools()


async def test_an_extend_whose_worker_dies_at_every_delivery_is_compensated(
    pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    """A crash loop: the worker dies in the extend step at each of its max_deliver
    deliveries (3 here). The one delivery more the durable allows does not run the step
    again: it gives up, and the saga's give-up records ExtendFailed (not left extending)."""
    case = next(c for c in CASES if c.name == "extend")
    async with open_saga_rig(pool, settings, tmp_path, POOLS, ACK_WAIT) as rig:
        started = await case.start(rig)
        for _ in range(rig.settings.saga_max_deliver):
            dying = worker(rig, pool, case, DiesAfter, started.subject)
            await asyncio.wait_for(dying.done.wait(), 15)
            task = rig.tasks[-1]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        counting = worker(rig, pool, case, Counting, started.subject)

        await until_true(lambda: is_settled(rig, case, started), "extend gave up")

        assert counting.calls == 0  # the step did not run a fourth time
        assert (await load(rig, started.volume_id)).status == Status.ERROR_EXTENDING
        recorded = await topics(pool, started.volume_id)
        assert recorded.count("Volume.ExtendFailed") == 1, recorded
        assert "Volume.Extended" not in recorded
        lost = await pool.fetchval(
            "SELECT error FROM dead_letters WHERE msg_id LIKE $1", f"{started.volume_id}:%"
        )
        assert lost.startswith("DeliveriesLostError"), lost
