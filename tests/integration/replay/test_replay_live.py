"""Replay while the live projector runs, writers append and readers read: readers only ever
see complete tables, and no event written during the rebuild is lost."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid

import asyncpg

from cinderblock.cli.eventlog import generate
from cinderblock.projector.run import NAME, Projector
from cinderblock.replay.rebuild import replay
from cinderblock.replay.session import PROJECTOR, PROJECTOR_ROLE
from cinderblock.replay.verify import verify
from cinderblock.runtime.leadership import leadership
from cinderblock.store.eventstore import AsyncEventStore
from tests.helpers.events import new_volume
from tests.helpers.servers import listening


def test_replay_names_the_projector_the_service_runs() -> None:
    assert PROJECTOR == NAME
    assert f"projector:{NAME}" == PROJECTOR_ROLE


async def _settled_end(pool: asyncpg.Pool) -> tuple[int, int]:
    row = await pool.fetchrow(
        "SELECT tx_id::text::bigint AS tx, position FROM events "
        "WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) "
        "ORDER BY tx_id DESC, position DESC LIMIT 1"
    )
    return (row["tx"], row["position"])


async def _tracked(pool: asyncpg.Pool) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT tx_id, position FROM tracking WHERE name = $1", NAME)
    return (row["tx_id"], row["position"]) if row else (0, 0)


async def test_replay_under_live_load_loses_nothing(log_db: str) -> None:
    await generate(log_db, 30_000, seed=11)
    pool = await asyncpg.create_pool(log_db, min_size=2, max_size=8)
    stop = asyncio.Event()  # the projector
    quiet = asyncio.Event()  # writers and readers
    written: list[uuid.UUID] = []
    counts: list[int] = []

    async def project() -> None:
        async with leadership(pool, f"projector:{NAME}", stop) as leader:
            assert leader
            await Projector(pool).follow(stop)

    async def write() -> None:
        store = AsyncEventStore(pool)
        while not quiet.is_set():
            volume = new_volume("live")
            volume.complete_create("h@b#p")
            await store.save(volume, meta={})
            volume.set_bootable(True)
            await store.save(volume, meta={})
            written.append(volume.id)
            await asyncio.sleep(0)

    async def read() -> None:
        while not quiet.is_set():
            counts.append(await pool.fetchval("SELECT count(*) FROM volumes"))
            await asyncio.sleep(0)

    try:
        async with listening(pool) as projected:
            tasks = [asyncio.create_task(project())]

            async def caught_up() -> bool:
                return await _tracked(pool) >= await _settled_end(pool)

            await projected.until(caught_up, timeout=120)
            tasks += [asyncio.create_task(write()), asyncio.create_task(read())]
            done = await replay(log_db)
            assert done.swapped
            assert done.live_position.position > 0
            during = len(written)
            await projected.until(lambda: _has(pool, written, during + 3), timeout=30)
            quiet.set()
            await asyncio.gather(*tasks[1:])
            await projected.until(caught_up, timeout=60)
            stop.set()
            await tasks[0]
    finally:
        quiet.set()
        stop.set()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await pool.close()
    assert counts
    shrank = [(a, b) for a, b in itertools.pairwise(counts) if b < a]
    assert not shrank, f"a reader saw fewer volumes than before (a half-built table): {shrank}"
    conn = await asyncpg.connect(log_db)
    try:
        bootable = await conn.fetchval(
            "SELECT count(*) FROM volumes WHERE id = ANY($1::uuid[]) AND bootable AND version = 3",
            written,
        )
    finally:
        await conn.close()
    assert bootable == len(written)  # every event written during the rebuild is there
    result = await verify(log_db)
    assert result.differences == []


async def _has(pool: asyncpg.Pool, written: list[uuid.UUID], at_least: int) -> bool:
    return len(written) >= at_least
