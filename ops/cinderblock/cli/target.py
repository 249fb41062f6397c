"""Which database a tooling command (history, state, audit, usage, replay, verify) reads.

``CINDERBLOCK_DATABASE_URL`` when set (production). Otherwise the embedded PostgreSQL of
``--data-dir`` (the same default as ``cinderblock dev``):

- a ``cinderblock dev`` is running on that data dir: its server is used as it is (found from
  ``<data_dir>/pg/postmaster.pid``), never stopped or restarted;
- nothing is running: the embedded server is started for the duration of the command and
  stopped afterwards, unless someone else (a ``cinderblock dev`` started meanwhile) is
  connected to it by then: it is left to them.

Usage::

    add_data_dir_argument(subparser)
    ...
    async with database(settings) as dsn:
        conn = await asyncpg.connect(dsn)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from cinderblock.cli.embedded import EmbeddedPostgres
from cinderblock.config.settings import Settings, SettingsError

log = logging.getLogger(__name__)

READY_TIMEOUT = 10.0


class TargetError(SettingsError):
    """There is no database to work on (reported like a settings error: exit code 2)."""


def running_dsn(data_dir: Path) -> str | None:
    """The DSN of the live postmaster of ``<data_dir>/pg`` (waiting while it starts up),
    or None when no server is running there."""
    postgres = EmbeddedPostgres(data_dir)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if postgres.postmaster_pid() is None:
            return None
        try:
            lines = (postgres.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return _dsn_from_pidfile(lines)
        if time.monotonic() > deadline:
            raise TargetError(f"PostgreSQL under {postgres.pgdata} is not ready: {lines[7:8]}")
        time.sleep(0.05)


def _dsn_from_pidfile(lines: list[str]) -> str:
    port, socket_dir, address = lines[3].strip(), lines[4].strip(), lines[5].strip()
    if socket_dir:
        return f"postgresql://postgres@/postgres?host={socket_dir}&port={port}"
    return f"postgresql://postgres@{address or '127.0.0.1'}:{port}/postgres"


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[str]:
    """The DSN to work on for as long as the context lasts (see the module docstring)."""
    if settings.database_url:
        yield settings.database_url
        return
    data_dir, dsn, initialised = await asyncio.to_thread(_inspect, Path(settings.data_dir))
    if dsn is not None:
        log.info("using the running embedded postgres", extra={"data_dir": str(data_dir)})
        yield dsn
        return
    if not initialised:
        raise TargetError(
            f"no database: CINDERBLOCK_DATABASE_URL is unset and there is no embedded "
            f"PostgreSQL under {data_dir} (run `cinderblock dev` there, or pass --data-dir)"
        )
    postgres = EmbeddedPostgres(data_dir)
    dsn = await asyncio.to_thread(postgres.start)
    try:
        yield dsn
    finally:
        if await _others_connected(dsn):
            log.warning(
                "embedded postgres left running: another process connected meanwhile",
                extra={"data_dir": str(data_dir)},
            )
        else:
            await asyncio.to_thread(postgres.stop)


def with_database(dsn: str, name: str) -> str:
    """``dsn`` naming database ``name`` on the same server, as the same user."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def ensure_database(dsn: str, name: str) -> str:
    """Database ``name`` on the server of ``dsn``, created when missing; its DSN."""
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            quoted = '"' + name.replace('"', '""') + '"'
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # made meanwhile
                await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()
    return with_database(dsn, name)


def _inspect(data_dir: Path) -> tuple[Path, str | None, bool]:
    """The resolved data dir, a running server's DSN, and whether a database exists there."""
    data_dir = data_dir.expanduser().resolve()
    return data_dir, running_dsn(data_dir), (data_dir / "pg" / "PG_VERSION").exists()


async def _others_connected(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        others: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return others > 0
