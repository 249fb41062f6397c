"""Heads held across commands (`LogWriter.invalidations`), with two writers standing for two
processes on one real PostgreSQL: a command builds on the head its process holds without a
query, another process's append is heard and makes the head be asked about again, and a
notification that comes too late costs a retry, never a wrong answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from cinderblock.domain.volume import Volume
from cinderblock.runtime.infra import create_schemas
from cinderblock.store.volumes import Caller, Volumes
from cinderblock.store.writer import LogWriter
from tests.helpers.servers import Servers, fresh_database
from tests.integration.test_group_commit import create, volumes

ADMIN = Caller("admin", "admin-project", is_admin=True)


@pytest_asyncio.fixture(scope="module")
async def pool(servers: Servers) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own (no sagas run here; other tests' sagas must not see these)."""
    async with fresh_database(servers) as dsn:
        p = await asyncpg.create_pool(dsn, min_size=1, max_size=8)
        await create_schemas(p)
        yield p
        await p.close()


def writer(service: Volumes) -> LogWriter:
    return service.store.writer  # type: ignore[no-any-return]


async def versions(pool: asyncpg.Pool, vid: uuid.UUID) -> list[int]:
    rows = await pool.fetch(
        "SELECT originator_version FROM events WHERE originator_id = $1 "
        "ORDER BY originator_version",
        vid,
    )
    return [r["originator_version"] for r in rows]


async def bootable(service: Volumes, vid: uuid.UUID, value: bool) -> None:
    await service.set_bootable(ADMIN, str(vid), value, meta={"request_id": f"req-{value}"})


class HearingWriter(LogWriter):
    """A writer that also tells the test each notification it has handled."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.handled: asyncio.Queue[str] = asyncio.Queue()

    def _on_append(self, conn: object, pid: int, channel: str, payload: str) -> None:
        super()._on_append(conn, pid, channel, payload)
        self.handled.put_nowait(payload)


def hearing(pool: asyncpg.Pool) -> Volumes:
    service = volumes(pool)
    service.store.writer = HearingWriter(pool)
    return service


async def heard(w: LogWriter, vid: uuid.UUID) -> None:
    """Wait (bounded) until the writer has handled a notification naming ``vid``."""
    assert isinstance(w, HearingWriter)
    async with asyncio.timeout(10):
        while str(vid) not in (await w.handled.get()):
            pass
    assert w._heads[vid].stale


async def available(service: Volumes, project: str) -> uuid.UUID:
    vid = await create(service, project)
    assert await service.complete_create(str(vid), "host@file#pool", meta={})
    return vid


async def test_held_heads_are_used_without_a_query(pool: asyncpg.Pool) -> None:
    service = volumes(pool)
    async with writer(service).invalidations(pool):
        vid = await available(service, f"p-{uuid.uuid4().hex[:8]}")
        before = writer(service).unasked_loads
        for value in (True, False, True, False):
            await bootable(service, vid, value)
        assert writer(service).unasked_loads - before == 4
    assert await versions(pool, vid) == [1, 2, 3, 4, 5, 6]
    volume = await service.get(ADMIN, str(vid))
    assert volume.bootable is False


async def test_without_listening_every_load_asks(pool: asyncpg.Pool) -> None:
    service = volumes(pool)
    vid = await available(service, f"p-{uuid.uuid4().hex[:8]}")
    await bootable(service, vid, True)
    assert writer(service).unasked_loads == 0


async def test_an_append_of_another_process_is_heard(pool: asyncpg.Pool) -> None:
    a, b = hearing(pool), volumes(pool)
    async with writer(a).invalidations(pool), writer(b).invalidations(pool):
        vid = await available(a, f"p-{uuid.uuid4().hex[:8]}")
        await bootable(a, vid, True)  # a holds version 3
        await bootable(b, vid, False)  # b asks the database, appends version 4
        await heard(writer(a), vid)
        await bootable(a, vid, True)  # builds on version 4: no conflict
    assert writer(a).conflicts == 0
    assert writer(b).conflicts == 0
    assert await versions(pool, vid) == [1, 2, 3, 4, 5]
    assert (await a.get(ADMIN, str(vid))).bootable is True


class DeafWriter(LogWriter):
    """Listens, but every notification comes too late (it never arrives)."""

    def _on_append(self, *_: object) -> None:
        return


def deaf(pool: asyncpg.Pool) -> Volumes:
    service = volumes(pool)
    service.store.writer = DeafWriter(pool)
    return service


async def test_a_write_on_a_stale_head_is_retried(pool: asyncpg.Pool) -> None:
    a, b = deaf(pool), volumes(pool)
    async with writer(a).invalidations(pool):
        vid = await available(a, f"p-{uuid.uuid4().hex[:8]}")
        await bootable(a, vid, True)  # a holds version 3
        await bootable(b, vid, False)  # version 4, unheard by a
        await bootable(a, vid, False)  # built on 3: refused by the database, retried on 4
        await bootable(a, vid, True)
    assert writer(a).conflicts == 1
    assert await versions(pool, vid) == [1, 2, 3, 4, 5, 6]
    assert (await b.get(ADMIN, str(vid))).bootable is True


async def test_a_refusal_on_a_stale_head_is_checked_first(pool: asyncpg.Pool) -> None:
    """a holds the volume as `creating`, in which it cannot be extended; another process
    completes the create. a's extend must be decided on `available`, not refused."""
    a, b = deaf(pool), volumes(pool)
    async with writer(a).invalidations(pool):
        vid = await create(a, f"p-{uuid.uuid4().hex[:8]}")
        await bootable(a, vid, True)  # a holds the volume, creating, at version 2
        assert await b.complete_create(str(vid), "host@file#pool", meta={})
        await a.extend_volume(
            ADMIN,
            str(vid),
            2,
            in_use_allowed=False,
            reservation_id=str(uuid.uuid4()),
            meta={"request_id": "req-extend"},
        )
    volume = await b.get(ADMIN, str(vid))
    assert isinstance(volume, Volume)
    assert volume.status == "extending"
    assert await versions(pool, vid) == [1, 2, 3, 4]


async def test_a_command_that_wrote_is_not_run_again(pool: asyncpg.Pool) -> None:
    """a deletes a volume, reading its project's quota from the head it holds while
    another process has moved that quota on (unheard). The delete writes only the volume:
    it is committed, answered once, and not retried (a retry would find it deleting)."""
    a, b = deaf(pool), volumes(pool)
    project = f"p-{uuid.uuid4().hex[:8]}"
    async with writer(a).invalidations(pool):
        vid = await available(a, project)
        await create(b, project)  # the quota moves on in the other process
        await a.delete_volume(ADMIN, str(vid), meta={"request_id": "req-delete"})
    rows = await pool.fetch(
        "SELECT topic FROM events WHERE originator_id = $1 ORDER BY originator_version", vid
    )
    assert [r["topic"].rsplit(".", 1)[-1] for r in rows][-1] == "DeleteRequested"
    assert len(rows) == 3
    assert writer(a).conflicts == 0


async def test_a_lost_listener_is_replaced(pool: asyncpg.Pool) -> None:
    """The listener's connection dies (the database restarted, say): every head is asked
    about until a new listener is in place, then held heads are used again."""
    service = volumes(pool)
    w = writer(service)
    async with w.invalidations(pool):
        vid = await available(service, f"p-{uuid.uuid4().hex[:8]}")
        (conn,) = w._listeners
        pid = conn.get_server_pid()  # type: ignore[attr-defined]
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
        async with asyncio.timeout(10):  # the loss is seen, then a new listener found
            while w._listeners in (set(), {conn}):  # noqa: ASYNC110 - no event tells
                await asyncio.sleep(0.05)
        assert w._heads[vid].stale
        before = w.unasked_loads
        await bootable(service, vid, True)  # asks the database (stale), then holds it
        await bootable(service, vid, False)  # held again, no query
        assert w.unasked_loads - before == 1
    assert await versions(pool, vid) == [1, 2, 3, 4]


async def test_leaving_forgets_what_was_heard(pool: asyncpg.Pool) -> None:
    service = volumes(pool)
    async with writer(service).invalidations(pool):
        vid = await available(service, f"p-{uuid.uuid4().hex[:8]}")
    before = writer(service).unasked_loads
    await bootable(service, vid, True)
    assert writer(service).unasked_loads == before


@pytest.mark.parametrize("ids", [1, 300])
async def test_the_notification_names_the_aggregates(pool: asyncpg.Pool, ids: int) -> None:
    """Up to a bound the payload lists the aggregates; past it, it says "everything"."""
    listener = await pool.acquire()
    got: asyncio.Queue[str] = asyncio.Queue()

    def hear(*args: object) -> None:
        got.put_nowait(str(args[3]))

    await listener.add_listener("cinderblock_events", hear)
    named: set[str] = set()
    try:
        service = volumes(pool)
        project = f"p-{uuid.uuid4().hex[:8]}"
        made = {
            str(v) for v in await asyncio.gather(*(create(service, project) for _ in range(ids)))
        }
        async with asyncio.timeout(10):
            while "*" not in named and not made <= named:
                token, _, listed = (await got.get()).partition(" ")
                assert token
                named.update(listed.split(","))
    finally:
        await listener.remove_listener("cinderblock_events", hear)
        await pool.release(listener)
    if ids == 1:
        assert "*" not in named
    else:
        assert "*" in named  # 300 volumes and their quota, in few statements


class HeldVerdicts(LogWriter):
    """A writer whose appends reach the database but whose verdicts wait for ``release``
    while ``hold`` is set: a process that has committed an append and not yet heard so."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.hold = False
        self.in_database = asyncio.Event()
        self.release = asyncio.Event()

    async def _insert(self, batch: list[Any]) -> None:
        if not self.hold:
            await super()._insert(batch)
            return
        verdicts: list[tuple[Any, tuple[int, int]]] = []
        commit = self._commit
        self._commit = lambda request, at: verdicts.append((request, at))  # type: ignore[method-assign]
        try:
            await super()._insert(batch)
        finally:
            del self._commit
        self.in_database.set()
        await self.release.wait()
        for request, at in verdicts:
            commit(request, at)


async def test_an_answer_on_a_pending_state_of_its_own_is_checked_first(
    pool: asyncpg.Pool,
) -> None:
    """a's append (bootable) is committed but a has not heard the verdict; another process
    reads it and requests the delete on top. a's delete saga, recording the removal, reads
    a's pending state (no delete requested there): its "nothing to record" must be checked
    against the database, and the removal recorded. (The chaos suite lost a delete so.)"""
    a, b = volumes(pool), volumes(pool)
    held = a.store.writer = HeldVerdicts(pool)
    vid = await available(a, f"p-{uuid.uuid4().hex[:8]}")
    held.hold = True
    setting = asyncio.create_task(bootable(a, vid, True))
    await asyncio.wait_for(held.in_database.wait(), 10)
    await b.delete_volume(ADMIN, str(vid), meta={"request_id": "req-delete"})
    assert await versions(pool, vid) == [1, 2, 3, 4]  # created, placed, bootable, delete asked
    recording = asyncio.create_task(a.complete_delete(str(vid), meta={"request_id": "req-d"}))
    await asyncio.sleep(0.05)  # the record is waiting for the state it read to commit
    held.release.set()
    assert await asyncio.wait_for(recording, 10) is True
    await setting
    deleted = await pool.fetchval(
        "SELECT count(*) FROM events WHERE originator_id = $1 AND topic LIKE '%Volume.Deleted'",
        vid,
    )
    assert deleted == 1
