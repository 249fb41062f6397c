"""The API's request log on PostgreSQL: batches written in the background, text the stores
cannot hold kept escaped, a row the table refuses never blocks the others, and what waits
during an outage is written once the database answers again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from cinderblock.audit.cadf import RequestFacts
from cinderblock.audit.requests import RequestLog, window_requests
from cinderblock.config.settings import Settings
from tests.helpers.request_log import until_kept


def _facts(**fields: object) -> RequestFacts:
    base: dict[str, object] = {
        "request_id": f"req-{uuid.uuid4()}",
        "at": datetime.now(UTC),
        "status": 404,
        "method": "GET",
        "path": "/v3/p/volumes/x",
        "project_id": uuid.uuid4().hex,
    }
    return RequestFacts(**{**base, **fields})  # type: ignore[arg-type]


async def test_facts_are_written_in_the_background_and_read_back(pool: asyncpg.Pool) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    log = RequestLog(pool, batch=2)
    log.start()
    try:
        kept = [_facts(target_id="a\x00b"), _facts(), _facts(fault="gone", status=403)]
        for facts in kept:
            log.add(facts)
        await until_kept(pool, *(f.request_id for f in kept))
    finally:
        await log.stop()
    async with pool.acquire() as conn:
        read = await window_requests(conn, since, None, kept[1].project_id)
        (first,) = await window_requests(conn, since, None, kept[0].project_id)
    assert read == [kept[1]]
    assert first.target_id == "a\\u0000b"
    assert log.dropped == 0


async def test_what_waits_through_an_outage_is_written_after_it(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """A pool whose database is gone refuses the batch: the facts stay buffered, in order,
    and the next flush on a working pool writes them."""
    closed = await asyncpg.create_pool(settings.database_url, min_size=0)
    await closed.close()
    log = RequestLog(closed, capacity=3)
    waiting = [_facts() for _ in range(4)]
    for facts in waiting:
        log.add(facts)
    assert not await log.flush()
    assert log.dropped == 1  # the oldest, past the capacity
    log.pool = pool
    assert await log.flush()
    await until_kept(pool, *(f.request_id for f in waiting[1:]))
