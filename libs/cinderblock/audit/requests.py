"""The API's request log: the facts of every request it answers under /v3 (refused ones and
reads too, which append no event), kept in PostgreSQL for `cinderblock audit`.

The API hands each request's facts to ``RequestLog.add`` and goes on; a background task
writes them in batches (one ``INSERT … unnest`` per batch), so a request waits for no
audit write. While the database is unavailable the facts wait in a bounded buffer (the
oldest dropped past ``capacity``, counted and logged once per outage); what is still
buffered when the API stops is written then. Nothing here decides a record's content:
``cinderblock.audit.cadf`` builds the CADF record from these facts and the events.

Rows are never deleted by Cinderblock: an operator keeps as much as audit rules ask
(``DELETE FROM api_requests WHERE at < …``; docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from cinderblock.audit.cadf import RequestFacts, records
from cinderblock.audit.log import window_events
from cinderblock.audit.schema import TABLE

log = logging.getLogger(__name__)

_INSERT = f"""
INSERT INTO {TABLE} (request_id, at, project_id, facts)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::jsonb[])
ON CONFLICT (request_id) DO NOTHING
"""
_WINDOW = f"""
SELECT facts::text AS facts FROM {TABLE}
WHERE at >= $1 AND ($2::timestamptz IS NULL OR at < $2)
  AND ($3::text IS NULL OR project_id = $3)
ORDER BY at
"""


class RequestLog:
    """Buffers request facts and writes them to ``api_requests`` in the background."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        batch: int = 500,
        interval: float = 0.05,
        capacity: int = 20_000,
    ) -> None:
        self.pool = pool
        self.batch = batch
        self.interval = interval
        self.capacity = capacity
        self.dropped = 0
        self._buffer: deque[RequestFacts] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing = False

    def add(self, facts: RequestFacts) -> None:
        if len(self._buffer) >= self.capacity:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(facts)
        if len(self._buffer) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-request-log")

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is buffered (for ``timeout`` seconds at most) and end the task."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._buffer:
            log.warning(
                "request log: %d requests not written at shutdown",
                len(self._buffer),
                extra={"dropped": len(self._buffer)},
            )

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            while self._buffer:
                try:
                    written = await self.flush()
                except Exception:  # never end the task: the next batch may go through
                    log.exception("request log: batch lost")
                    written = False
                if not written:
                    break
            if self._stopping and (not self._buffer or self._failing):
                return
            if self._failing:
                await asyncio.sleep(1.0)

    async def _insert(self, taken: list[RequestFacts]) -> None:
        rows = [f.to_json() for f in taken]
        await self.pool.execute(
            _INSERT,
            [r["request_id"] for r in rows],
            [f.at for f in taken],
            [r.get("project_id") for r in rows],
            [json.dumps(r) for r in rows],
        )

    async def flush(self) -> bool:
        """Write one batch; False (kept for the next try) if the database refused it."""
        taken = [self._buffer.popleft() for _ in range(min(self.batch, len(self._buffer)))]
        if not taken:
            return True
        try:
            await self._insert(taken)
        except asyncpg.DataError:  # a row the table refuses: keep the others, log that one
            for facts in taken:
                try:
                    await self._insert([facts])
                except asyncpg.DataError as err:
                    self.dropped += 1
                    log.error(
                        "request log: row refused: %s",
                        err,
                        extra={"request_id": facts.request_id},
                    )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            if not self._failing:
                log.error("request log: cannot write audit rows: %s", err)
            self._failing = True
            self._buffer.extendleft(reversed(taken))  # first again, in their order
            while len(self._buffer) > self.capacity:
                self._buffer.popleft()
                self.dropped += 1
            return False
        if self._failing:
            log.info("request log: writing again", extra={"dropped": self.dropped})
        self._failing = False
        return True


async def window_requests(
    conn: asyncpg.Connection, since: datetime, until: datetime | None, project_id: str | None
) -> list[RequestFacts]:
    """Requests answered in ``[since, until)`` (by ``project_id`` when given), oldest first;
    none from a database no API of this version has written to."""
    if not await conn.fetchval(f"SELECT to_regclass('{TABLE}') IS NOT NULL"):
        return []
    rows = await conn.fetch(_WINDOW, since, until, project_id)
    return [RequestFacts.from_json(json.loads(r["facts"])) for r in rows]


_REFUSED = f"""
SELECT facts::text AS facts FROM {TABLE}
WHERE facts->>'target_id' = ANY($1::text[]) AND (facts->>'status')::int >= 400
ORDER BY at
"""


async def refused_about(conn: asyncpg.Connection, target_ids: Sequence[str]) -> list[RequestFacts]:
    """The requests the API refused about ``target_ids`` (a volume and its snapshots),
    oldest first; none from a database no API of this version has written to."""
    if not target_ids or not await conn.fetchval(f"SELECT to_regclass('{TABLE}') IS NOT NULL"):
        return []
    rows = await conn.fetch(_REFUSED, list(target_ids))
    return [RequestFacts.from_json(json.loads(r["facts"])) for r in rows]


async def window_records(
    conn: asyncpg.Connection,
    since: datetime,
    until: datetime | None,
    *,
    project_id: str | None = None,
) -> list[dict[str, object]]:
    """The CADF records of the requests of a time window (`cinderblock audit`)."""
    requests = await window_requests(conn, since, until, project_id)
    events = await window_events(conn, since, until)
    return records(events, project_id=project_id, requests=requests)
