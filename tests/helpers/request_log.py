"""Waiting for the API's request log (``cinderblock.audit.requests``), which the API writes
in the background a few milliseconds after it answers."""

from __future__ import annotations

import asyncio

import asyncpg


async def until_kept(pool: asyncpg.Pool, *request_ids: str, timeout: float = 10.0) -> None:
    """Until ``api_requests`` holds every one of ``request_ids``."""
    sql = "SELECT count(*) FROM api_requests WHERE request_id = ANY($1::text[])"
    async with asyncio.timeout(timeout):
        while True:
            if await pool.fetchval(sql, list(request_ids)) == len(set(request_ids)):
                return
            await asyncio.sleep(0.02)
