"""The connections of one replay or verify: a writer and a reader, the database's replay
lock, and the projector's leadership lock when no projector runs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from cinderblock.readmodels.tables import q

# The live projector's tracking name and leadership role (services/cinderblock/projector).
PROJECTOR = "volumes"
PROJECTOR_ROLE = f"projector:{PROJECTOR}"


class ReplayBusyError(RuntimeError):
    """Another replay or verify holds the database."""


REPLAY_LOCK = "cinderblock-replay"


async def _exclusive(conn: asyncpg.Connection) -> None:
    """One replay or verify at a time per database (session lock, released when ``conn``
    closes); side schemas left by one that was killed are dropped."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", REPLAY_LOCK):
        raise ReplayBusyError("another cinderblock replay or verify is running on this database")
    stale = await conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname ~ '^rebuild_[0-9]+(_old)?$'"
    )
    for row in stale:
        await conn.execute(f"DROP SCHEMA IF EXISTS {q(row['nspname'])} CASCADE")


@contextlib.asynccontextmanager
async def connections(
    dsn: str, *, exclusive: bool = False
) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection]]:
    """A writer (derived data only: no wait for the WAL flush) and a reader connection;
    ``exclusive``: also the database's replay lock (see ``_exclusive``)."""
    conn = await asyncpg.connect(dsn, server_settings={"synchronous_commit": "off"})
    try:
        if exclusive:
            await _exclusive(conn)
        reader = await asyncpg.connect(dsn)
        try:
            yield conn, reader
        finally:
            await reader.close()
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def projector_paused(conn: asyncpg.Connection, *, take: bool = True) -> AsyncIterator[bool]:
    """Yields True when no projector is active: this session then holds the projector's
    leadership lock until the end, so none can start meanwhile (a starting projector stands
    by, then resumes from the tracking row). False: a live projector runs; follow it.
    ``take=False`` (nothing of the projector's is rebuilt): leave the projector alone."""
    if not take:
        yield False
        return
    own = await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", PROJECTOR_ROLE)
    try:
        yield bool(own)
    finally:
        if own:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", PROJECTOR_ROLE)
