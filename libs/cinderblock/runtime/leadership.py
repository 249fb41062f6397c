"""One active instance per role: a session advisory lock held on a dedicated connection.
If the holder dies, PostgreSQL releases the lock with its session and a standby, asking
every ``retry`` seconds, takes over (tests/integration/test_standbys.py). A holder whose
lock session ends while it lives (PostgreSQL restarted, the backend terminated, the
connection broken) has lost the role to whoever asks next: ``lead`` stops its work and
stands by again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from cinderblock.runtime.outage import database_unavailable

log = logging.getLogger(__name__)


# Seconds the lock's session may take to answer the holder's check before it counts as lost.
CHECK_TIMEOUT = 10.0


@contextlib.asynccontextmanager
async def leadership(
    pool: asyncpg.Pool,
    role: str,
    stop: asyncio.Event,
    *,
    retry: float = 1.0,
    lost: asyncio.Event | None = None,
) -> AsyncIterator[bool]:
    """Yields True once this process holds ``role``; False if ``stop`` came first.

    ``lost``, when given, is set if the lock's session ends while the role is held (checked
    every ``retry`` seconds): from then on a standby may hold the role.
    """
    async with pool.acquire() as conn:
        held = waited = False
        while not stop.is_set():
            held = await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", role)
            if held:
                if waited:
                    log.info("taking over: no other instance is active", extra={"role": role})
                break
            if not waited:  # once: a standby may wait for weeks
                log.info("standing by: another instance is active", extra={"role": role})
                waited = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry)
        watch = None
        if held and lost is not None:
            watch = asyncio.get_running_loop().create_task(_watch(conn, role, lost, retry))
        try:
            yield held
        finally:
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
            if held and not (lost is not None and lost.is_set()):
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                    await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", role)


async def _watch(conn: asyncpg.Connection, role: str, lost: asyncio.Event, every: float) -> None:
    """Set ``lost`` once the session holding the lock does not answer."""
    try:
        while True:
            await asyncio.sleep(every)
            await asyncio.wait_for(conn.fetchval("SELECT 1"), CHECK_TIMEOUT)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as err:
        log.error(
            "lost the lock: another instance may be active now, stopping (%s)",
            err or type(err).__name__,
            extra={"role": role},
        )
        lost.set()
        # A session that only stopped answering must not keep the lock (a closed connection
        # has already gone back to the pool: nothing left to end).
        with contextlib.suppress(asyncpg.InterfaceError):
            conn.terminate()


Work = Callable[[asyncio.Event], Awaitable[None]]


async def lead(
    pool: asyncpg.Pool, role: str, stop: asyncio.Event, work: Work, *, retry: float = 1.0
) -> None:
    """Until ``stop``: stand by until this process holds ``role``, then run ``work(until)``;
    ``until`` is set at ``stop`` or when the lock is lost, and after a loss the process
    stands by again (another instance may have taken the role meanwhile). The database
    going away (`runtime.outage.database_unavailable`) is waited out the same way: one log
    line, then the process asks for the role every ``retry`` seconds until the database is
    back; any other error of ``work`` ends ``lead``."""
    away = False
    while not stop.is_set():
        lost = asyncio.Event()
        try:
            async with leadership(pool, role, stop, retry=retry, lost=lost) as leader:
                if not leader:
                    return
                if away:
                    log.info("the database is back: %s carries on", role, extra={"role": role})
                    away = False
                until = asyncio.Event()
                either = asyncio.get_running_loop().create_task(_first(until, stop, lost))
                try:
                    await work(until)
                finally:
                    either.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await either
        except Exception as err:
            if not database_unavailable(err):
                raise
            if not away:
                log.warning(
                    "the database is unavailable: %s waits for it (%s)",
                    role,
                    err or type(err).__name__,
                    extra={"role": role},
                )
                away = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry)


async def _first(until: asyncio.Event, *events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    until.set()
