"""Volumes created from a snapshot or a volume: the live projector and replay's fold give the
same rows (``snapshot_id``, ``source_volid`` from ``Volume.SourceSet``)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from cinderblock.domain.snapshot import Snapshot
from cinderblock.projector.run import Projector
from cinderblock.replay.verify import verify
from cinderblock.store.eventstore import START, AsyncEventStore, read_settled
from cinderblock.store.volumes import Caller, Volumes

HOST = "h@file-a#pool"


async def _volume(volumes: Volumes, caller: Caller, **extra: Any) -> str:
    vid = uuid.uuid4()
    await volumes.create_volume(
        caller,
        vid,
        meta={},
        name=None,
        description=None,
        size_gb=1,
        metadata={},
        bootable=False,
        multiattach=False,
        **extra,
    )
    await volumes.complete_create(str(vid), HOST, meta={})
    return str(vid)


async def test_volumes_from_sources_project_and_replay_alike(log_db: str) -> None:
    pool = await asyncpg.create_pool(log_db, min_size=1, max_size=2)
    try:
        volumes = Volumes(AsyncEventStore(pool))
        caller = Caller("u", uuid.uuid4().hex)
        source = await _volume(volumes, caller)
        sid = uuid.uuid4()
        await volumes.create_snapshot(
            caller,
            source,
            sid,
            name=None,
            description=None,
            metadata={},
            force=False,
            in_use_ok=False,
            meta={},
            authorize=lambda _: None,
        )
        await volumes.settle_snapshot(str(sid), Snapshot.complete_create, meta={})
        from_snap = await _volume(
            volumes,
            caller,
            source={"snapshot_id": str(sid), "source_volid": None, "source_host": HOST},
        )
        clone = await _volume(
            volumes,
            caller,
            source={"snapshot_id": None, "source_volid": source, "source_host": HOST},
        )
        projector = Projector(pool)
        after = START
        while True:
            async with pool.acquire() as conn:
                batch = await read_settled(conn, after, 500)
            if not batch:
                break
            await projector.project(batch)
            after = batch[-1].at
        rows = {
            str(r["id"]): (r["snapshot_id"], r["source_volid"])
            for r in await pool.fetch("SELECT id, snapshot_id, source_volid FROM volumes")
        }
    finally:
        await pool.close()
    assert rows[from_snap] == (str(sid), None)
    assert rows[clone] == (None, source)
    assert rows[source] == (None, None)
    result = await verify(log_db)
    assert result.differences == []
    assert result.rows["volumes"] == 3
