"""A worker killed after the re-encrypting copy of a retype replaced the image in place, but
before the retype was recorded: the redelivered step finds the copy done (same key id) and
does not shift the data a second time; the volume ends retyped and encrypted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest_asyncio

from cinderblock.bus.jetstream import run_consumer
from cinderblock.config.settings import Settings
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.drivers.encryption import LUKS1_HEADER, EncryptionHeader, header_of
from cinderblock.drivers.file import FileDriver
from cinderblock.sagas.run import SagaRunner
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.volumes import Caller
from tests.helpers.rigs import SagaRig, open_saga_rig

DATA = b"the guest's first block"
LUKS = {
    "provider": "luks",
    "cipher": "aes-xts-plain64",
    "key_size": 256,
    "control_location": "front-end",
}


@pytest_asyncio.fixture
async def rig(pool: asyncpg.Pool, settings: Settings, tmp_path: Path) -> AsyncIterator[SagaRig]:
    async with open_saga_rig(pool, settings, tmp_path) as r:
        yield r


class DiesAfterReencrypt:
    """The file driver, but the worker 'dies' right after the re-encrypted image of the
    volume under test took the old one's place."""

    def __init__(self, inner: FileDriver, volume_id: uuid.UUID) -> None:
        self.inner = inner
        self.volume_id = str(volume_id)
        self.copied = asyncio.Event()
        self.copies = 0

    async def reencrypt_volume(
        self,
        volume_id: str,
        source: str,
        destination: str,
        *,
        target: EncryptionHeader | None,
        step_key: str,
    ) -> str:
        where = await self.inner.reencrypt_volume(
            volume_id, source, destination, target=target, step_key=step_key
        )
        if volume_id == self.volume_id:
            self.copies += 1
            self.copied.set()
            await asyncio.Event().wait()
        return where

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


class Counting(DiesAfterReencrypt):
    async def reencrypt_volume(  # type: ignore[override]
        self, volume_id: str, source: str, destination: str, **kw: object
    ) -> str:
        if volume_id == self.volume_id:
            self.copies += 1
        return await self.inner.reencrypt_volume(volume_id, source, destination, **kw)  # type: ignore[arg-type]


async def _retyping(r: SagaRig) -> tuple[Volume, str]:
    vid, caller = uuid.uuid4(), Caller("u", uuid.uuid4().hex)
    await r.volumes.create_volume(
        caller,
        vid,
        meta={},
        name=None,
        description=None,
        size_gb=2,
        metadata={},
        bootable=False,
        multiattach=False,
    )
    host = await r.files.create_volume(str(vid), 2, location=None, step_key="c")
    await r.volumes.complete_create(str(vid), host, meta={})
    path = r.files.volume_path(str(vid), host)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, DATA, 0)
    finally:
        os.close(fd)
    _, type_id = await r.volumes.create_type(
        name=f"luks-{uuid.uuid4().hex[:8]}",
        description=None,
        is_public=True,
        extra_specs={},
        meta={},
    )
    await r.volumes.change_type(type_id, lambda t: t.create_encryption("enc-1", LUKS), meta={})
    new_type = await r.volumes.find_type(type_id)
    await r.volumes.retype_volume(
        caller,
        str(vid),
        new_type,
        migration_policy="on-demand",
        reservation_id="r",
        meta={},
        authorize=lambda _: None,
    )
    volume = await r.volumes.store.load(vid, Volume)
    assert volume is not None
    return volume, host


async def test_killed_after_the_copy_is_finished_by_redelivery(
    rig: SagaRig,
    pool: asyncpg.Pool,
) -> None:
    volume, host = await _retyping(rig)
    dying = DiesAfterReencrypt(rig.files, volume.id)
    first = SagaRunner(rig.settings, pool, dying)  # type: ignore[arg-type]
    worker = rig.start(run_consumer(rig.js, first.spec, first.handle, first.park, asyncio.Event()))
    await asyncio.wait_for(dying.copied.wait(), 15)
    worker.cancel()  # killed between the driver step and the completion event
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    path = rig.files.volume_path(str(volume.id), host)
    record = header_of(path)
    assert record is not None  # the image was already replaced by its encrypted copy
    still = await AsyncEventStore(pool).load(volume.id, Volume)
    assert still is not None
    assert still.status == Status.RETYPING

    counting = Counting(rig.files, volume.id)
    second = SagaRunner(rig.settings, pool, counting)  # type: ignore[arg-type]
    rig.start(run_consumer(rig.js, second.spec, second.handle, second.park, asyncio.Event()))
    for _ in range(2000):
        done = await AsyncEventStore(pool).load(volume.id, Volume)
        if done is not None and done.status != Status.RETYPING:
            break
        await asyncio.sleep(0.01)
    assert done is not None
    assert (done.status, done.migration_status) == (Status.AVAILABLE, "success")
    assert done.encryption_key_id == record["key_id"]
    assert counting.copies == 1  # redelivered once; the copy was found done
    with path.open("rb") as image:
        image.seek(LUKS1_HEADER)
        assert image.read(len(DATA)) == DATA  # behind the header once, not twice


class CopiesThenFails(DiesAfterReencrypt):
    """Makes the re-encrypted copy (swapped in place), then fails with an error that is
    no driver failure, on every delivery; the compensation's copy back goes through."""

    async def reencrypt_volume(  # type: ignore[override]
        self, volume_id: str, source: str, destination: str, **kw: object
    ) -> str:
        where = await self.inner.reencrypt_volume(volume_id, source, destination, **kw)  # type: ignore[arg-type]
        if volume_id == self.volume_id and kw.get("target") is not None:
            self.copies += 1
            raise RuntimeError("controller unreachable")
        return where


async def test_giving_up_puts_the_old_image_back(
    rig: SagaRig,
    pool: asyncpg.Pool,
) -> None:
    volume, host = await _retyping(rig)
    path = rig.files.volume_path(str(volume.id), host)
    broken = CopiesThenFails(rig.files, volume.id)
    runner = SagaRunner(rig.settings, pool, broken)  # type: ignore[arg-type]
    rig.start(run_consumer(rig.js, runner.spec, runner.handle, runner.park, asyncio.Event()))
    for _ in range(2000):
        done = await AsyncEventStore(pool).load(volume.id, Volume)
        if done is not None and done.status != Status.RETYPING:
            break
        await asyncio.sleep(0.01)
    assert done is not None
    assert (done.status, done.migration_status) == (Status.AVAILABLE, "error")
    assert (done.volume_type_id, done.encryption_key_id) == (volume.volume_type_id, None)
    assert broken.copies == rig.settings.saga_max_deliver
    assert header_of(path) is None  # the image is unencrypted again, as recorded
    with path.open("rb") as image:
        assert image.read(len(DATA)) == DATA
