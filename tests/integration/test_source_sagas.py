"""The create saga of a volume with a source, against real PostgreSQL and files: a source
gone before the copy fails the create cleanly (``error``, the reason recorded, no file, the
pool's accounting as a fresh scan finds it)."""

from __future__ import annotations

import uuid
from pathlib import Path
from uuid import UUID

import asyncpg

from cinderblock.config.settings import Settings
from cinderblock.domain.status import Status
from cinderblock.drivers.base import PoolConfig
from cinderblock.drivers.file import FileDriver
from cinderblock.sagas.consumers import Sagas
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.volumes import Volumes
from cinderblock.wire.envelope import ReceivedEnvelope
from tests.helpers.rigs import open_saga_rig
from tests.helpers.saga_starts import POOLS, available, creating_from, load, snapshotted


def created_event(volume_id: str) -> ReceivedEnvelope:
    return ReceivedEnvelope(
        id=f"{volume_id}:1",
        type="volume.created",
        aggregate="volume",
        aggregate_id=volume_id,
        version=1,
        position=1,
        occurred_at="2026-01-01T00:00:00Z",
    )


async def reasons(pool: asyncpg.Pool, volume_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT state FROM events WHERE originator_id = $1 AND topic LIKE '%CreateFailed'",
        UUID(volume_id),
    )
    return [bytes(r["state"]).decode() for r in rows]


async def test_a_snapshot_gone_before_the_copy_fails_the_create(
    pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    async with open_saga_rig(pool, settings, tmp_path, POOLS) as rig:
        _, caller, host, sid = await snapshotted(rig)
        vid = await creating_from(rig, caller, host, snapshot_id=sid)
        await rig.files.delete_snapshot(sid, host, step_key="gone")  # removed meanwhile
        sagas = Sagas(Volumes(AsyncEventStore(pool)), rig.files)
        await sagas.when_created_place_and_create(created_event(vid))

        volume = await load(rig, vid)
        assert (volume.status, volume.host) == (Status.ERROR, None)
        (reason,) = await reasons(pool, vid)
        assert "not found" in reason
        assert not list(rig.files.root.glob(f"*/*/volume-{vid}.img"))
        fresh = FileDriver(rig.files.root, [PoolConfig.parse(p) for p in POOLS])
        assert rig.files.pools() == fresh.pools()

        await sagas.when_created_place_and_create(created_event(vid))  # redelivered: no-op
        assert (await load(rig, vid)).status == Status.ERROR


async def test_a_clone_of_a_volume_in_a_pool_the_type_cannot_use_fails(
    pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    async with open_saga_rig(pool, settings, tmp_path, POOLS) as rig:
        source, caller, host = await available(rig)
        _, type_id = await rig.volumes.create_type(
            name=f"on-b-{uuid.uuid4().hex[:8]}",
            description=None,
            is_public=True,
            extra_specs={"volume_backend_name": "file-b"},
            meta={},
        )
        vid = uuid.uuid4()
        await rig.volumes.create_volume(
            caller,
            vid,
            meta={},
            source={"snapshot_id": None, "source_volid": source, "source_host": host},
            name=None,
            description=None,
            size_gb=1,
            volume_type_id=type_id,
            volume_type_name="on-b",
            metadata={},
            bootable=False,
            multiattach=False,
        )
        sagas = Sagas(Volumes(AsyncEventStore(pool)), rig.files)
        await sagas.when_created_place_and_create(created_event(str(vid)))
        assert (await load(rig, str(vid))).status == Status.ERROR
        (reason,) = await reasons(pool, str(vid))
        assert "does not suit volume type on-b" in reason
        assert not list(rig.files.root.glob(f"*/*/volume-{vid}.img"))
