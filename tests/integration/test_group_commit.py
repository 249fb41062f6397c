"""Concurrent commands on real PostgreSQL: commands of one project build on each other
instead of conflicting, share append statements (group commit), and keep the quota exact,
also when a second writer (another process's) races them."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from cinderblock.domain.errors import QuotaExceededError
from cinderblock.domain.quota import ProjectQuota, quota_id
from cinderblock.domain.volume import Volume
from cinderblock.runtime.infra import create_schemas
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.volumes import Caller, ConflictError, Volumes, VolumesConfig
from cinderblock.store.writer import ConcurrencyConflictError
from tests.helpers.servers import Servers, fresh_database


@pytest_asyncio.fixture(scope="module")
async def pool(servers: Servers) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own: these volumes stay `creating` (no sagas run here), and the
    sagas of other tests reading the shared database must not find them."""
    async with fresh_database(servers) as dsn:
        p = await asyncpg.create_pool(dsn, min_size=1, max_size=8)
        await create_schemas(p)
        yield p
        await p.close()


UNLIMITED = {"volumes": -1, "gigabytes": -1, "snapshots": -1, "per_volume_gigabytes": -1}


def volumes(pool: asyncpg.Pool, limits: dict[str, int] | None = None) -> Volumes:
    """A command service with its own writer: what one process has."""
    return Volumes(AsyncEventStore(pool), VolumesConfig(quota_limits=limits or UNLIMITED))


async def create(service: Volumes, project: str, size: int = 1) -> uuid.UUID:
    vid = uuid.uuid4()
    await service.create_volume(
        Caller("u", project),
        vid,
        meta={"request_id": f"req-{vid}"},
        name=None,
        description=None,
        size_gb=size,
        metadata={},
        bootable=False,
        multiattach=False,
    )
    return vid


async def quota_versions(pool: asyncpg.Pool, project: str) -> list[int]:
    rows = await pool.fetch(
        "SELECT originator_version FROM events WHERE originator_id = $1 "
        "ORDER BY originator_version",
        quota_id(project),
    )
    return [r["originator_version"] for r in rows]


async def logged_quota(pool: asyncpg.Pool, project: str) -> ProjectQuota:
    quota = await AsyncEventStore(pool).load(quota_id(project), ProjectQuota)
    assert quota is not None
    return quota


async def test_a_burst_in_one_project_all_succeed_in_few_statements(pool: asyncpg.Pool) -> None:
    project = f"p-{uuid.uuid4().hex[:8]}"
    service = volumes(pool)
    ids = await asyncio.gather(*(create(service, project, size=2) for _ in range(64)))
    assert len(set(ids)) == 64
    # Every create is one quota event on top of the previous one: versions 1..65.
    assert await quota_versions(pool, project) == list(range(1, 66))
    quota = await logged_quota(pool, project)
    assert (quota.usage("volumes"), quota.usage("gigabytes")) == (64, 128)
    # Commands waiting together were appended together.
    assert service.store.writer.statements < 64


async def test_commands_on_different_aggregates_share_a_statement(pool: asyncpg.Pool) -> None:
    service = volumes(pool)
    projects = [f"p-{uuid.uuid4().hex[:8]}" for _ in range(16)]
    await asyncio.gather(*(create(service, p) for p in projects))
    before = service.store.writer.statements
    ids = await asyncio.gather(*(create(service, p) for p in projects))
    assert service.store.writer.statements - before < len(projects)
    rows = await pool.fetch(
        "SELECT DISTINCT tx_id FROM events WHERE originator_id = ANY($1::uuid[])", ids
    )
    assert len(rows) < len(ids)  # several commands committed in one transaction


async def test_two_writers_racing_on_one_quota_both_finish(pool: asyncpg.Pool) -> None:
    """Two processes' worth of writers: conflicts between them retry with back-off until
    every command is in, and the log holds exactly one quota event per create."""
    project = f"p-{uuid.uuid4().hex[:8]}"
    first, second = volumes(pool), volumes(pool)
    ids = await asyncio.gather(
        *(create(first, project) for _ in range(24)),
        *(create(second, project) for _ in range(24)),
    )
    assert len(set(ids)) == 48
    assert await quota_versions(pool, project) == list(range(1, 50))
    assert (await logged_quota(pool, project)).usage("volumes") == 48


async def test_a_limit_holds_under_a_burst(pool: asyncpg.Pool) -> None:
    """With room for exactly 10 volumes, 30 concurrent creates from two writers: 10 get in,
    20 are refused for quota (never for concurrency), and usage is 10."""
    project = f"p-{uuid.uuid4().hex[:8]}"
    limits = {**UNLIMITED, "volumes": 10}
    first, second = volumes(pool, limits), volumes(pool, limits)
    results = await asyncio.gather(
        *(create(first, project) for _ in range(15)),
        *(create(second, project) for _ in range(15)),
        return_exceptions=True,
    )
    accepted = [r for r in results if isinstance(r, uuid.UUID)]
    refused = [r for r in results if isinstance(r, QuotaExceededError)]
    assert (len(accepted), len(refused)) == (10, 20), results
    assert (await logged_quota(pool, project)).usage("volumes") == 10


async def test_a_failed_append_fails_what_built_on_it_and_they_retry(pool: asyncpg.Pool) -> None:
    """Another process takes the quota version this process's queued command was going to
    write: that command and every command queued on top of it are retried on fresh state;
    none is lost, none is doubled."""
    project = f"p-{uuid.uuid4().hex[:8]}"
    service = volumes(pool)
    await create(service, project)  # quota at version 2, known to this writer
    intruder = volumes(pool)
    quota = await intruder.store.load(quota_id(project), ProjectQuota)
    assert quota is not None
    quota.consume({"volumes": 1}, UNLIMITED, size_gb=0, reason="another process")
    # Hold the intruder's row uncommitted while this writer queues on version 2.
    conn = await pool.acquire()
    try:
        tx = conn.transaction()
        await tx.start()
        events = quota.collect_events()
        stored = intruder.store.mapper.to_stored_event(events[0])
        await conn.execute(
            "INSERT INTO events (originator_id, originator_version, topic, state, meta) "
            "VALUES ($1, $2, $3, $4, '{}')",
            stored.originator_id,
            stored.originator_version,
            stored.topic,
            stored.state,
        )
        burst = asyncio.gather(*(create(service, project) for _ in range(8)))
        await asyncio.sleep(0.05)  # the first statement is now waiting on the held row
        await tx.commit()
    finally:
        await pool.release(conn)
    ids = await burst
    assert len(set(ids)) == 8
    assert service.store.writer.conflicts >= 1  # the held version was really fought over
    assert await quota_versions(pool, project) == list(range(1, 12))
    assert (await logged_quota(pool, project)).usage("volumes") == 1 + 1 + 8


async def test_a_refusal_waits_for_the_state_it_read(pool: asyncpg.Pool) -> None:
    """A command that reads another's pending state and refuses (no events) answers only
    once that state is committed."""
    project = f"p-{uuid.uuid4().hex[:8]}"
    service = volumes(pool, {**UNLIMITED, "volumes": 1})
    first = asyncio.create_task(create(service, project))
    # Until the first create's quota state is appended and awaits its verdict (its load
    # may need a round trip first: a bare yield raced the second create under load).
    writer = service.store.writer
    for _ in range(100_000):
        if writer.has_pending(quota_id(project)) or first.done():
            break
        await asyncio.sleep(0)
    assert writer.has_pending(quota_id(project)), "the first create never appended"
    with pytest.raises(QuotaExceededError):
        await create(service, project)
    # The state the refusal rests on (the first create's quota event) is in the log.
    assert await quota_versions(pool, project) == [1, 2]
    assert isinstance(await first, uuid.UUID)


async def test_conflicts_with_another_writer_surface_only_after_the_deadline(
    pool: asyncpg.Pool,
) -> None:
    project = f"p-{uuid.uuid4().hex[:8]}"
    service = Volumes(
        AsyncEventStore(pool), VolumesConfig(quota_limits=UNLIMITED, conflict_deadline=0.2)
    )
    vid = await create(service, project)
    tries = 0

    async def always_conflicts() -> None:
        nonlocal tries
        tries += 1
        volume = await service.store.load(vid, Volume)
        assert volume is not None
        raise ConcurrencyConflictError("simulated")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConflictError):
        await service._retrying("test", always_conflicts)
    assert loop.time() - started >= 0.2
    assert tries > 4  # a deadline, not a count of four


async def test_the_writer_reports_what_it_grouped(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """The figures of the "group commit" log line add up to what was appended."""
    service = volumes(pool)
    writer = service.store.writer
    projects = [f"p-{uuid.uuid4().hex[:8]}" for _ in range(16)]
    await asyncio.gather(*(create(service, p) for p in projects))
    writer.report()  # start counting afresh
    statements_before = writer.statements
    ids = await asyncio.gather(*(create(service, p) for p in projects))
    with caplog.at_level(logging.INFO, logger="cinderblock.store.writer"):
        figures = writer.report()
    assert figures["commands"] == len(ids)
    # A create is two events: the volume's and the project quota's.
    assert figures["rows"] == 2 * len(ids)
    assert figures["statements"] == writer.statements - statements_before
    assert figures["largest_statement"] > 1
    assert figures["commands_per_statement"] == round(len(ids) / figures["statements"], 2)
    (line,) = [r for r in caplog.records if r.getMessage().startswith("group commit")]
    assert line.group_commit == figures  # type: ignore[attr-defined]
