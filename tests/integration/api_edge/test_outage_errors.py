"""Which errors mean "the database is not there" (503 with Retry-After) and which are bugs
(500), told apart on errors real asyncpg raises against the real server."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import asyncpg
import pytest

from cinderblock.api.middleware import to_fault
from cinderblock.api.outage import RETRY_AFTER, database_unavailable
from cinderblock.wire.faults import ServiceUnavailable
from tests.helpers.servers import Servers

pytestmark = pytest.mark.integration

_ACTIVE = "SELECT state FROM pg_stat_activity WHERE pid = $1"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _raised(coro: object) -> BaseException:
    try:
        await coro  # type: ignore[misc]
    except Exception as err:
        return err
    raise AssertionError("nothing raised")


async def test_a_refused_connection_is_unavailable_and_answers_503() -> None:
    err = await _raised(asyncpg.connect(f"postgresql://postgres@127.0.0.1:{_closed_port()}/x"))
    assert isinstance(err, OSError)
    assert database_unavailable(err)
    fault = to_fault(err)
    assert isinstance(fault, ServiceUnavailable)
    assert fault.status == 503
    assert fault.headers == {"Retry-After": str(RETRY_AFTER)}
    assert fault.body() == {
        "serviceUnavailable": {"code": 503, "message": "Service is unavailable at this time."}
    }


async def test_a_terminated_backend_is_unavailable(servers: Servers) -> None:
    """The server ends the backend while a query runs on it (as a restart does)."""
    victim = await asyncpg.connect(servers.database_url)
    admin = await asyncpg.connect(servers.database_url)
    try:
        pid = victim.get_server_pid()
        running = asyncio.ensure_future(victim.fetchval("SELECT pg_sleep(30)"))
        async with asyncio.timeout(10):  # the query is running on the server
            while await admin.fetchval(_ACTIVE, pid) != "active":  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        err = await _raised(running)
    finally:
        await admin.close()
        victim.terminate()
    assert isinstance(err, asyncpg.AdminShutdownError | asyncpg.ConnectionDoesNotExistError)
    assert database_unavailable(err)


async def test_a_pool_acquire_timeout_is_unavailable(servers: Servers) -> None:
    pool = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire():
            err = await _raised(pool.acquire(timeout=0.01))
    finally:
        await pool.close()
    assert isinstance(err, TimeoutError)
    assert database_unavailable(err)


async def test_what_it_was_raised_from_counts() -> None:
    cause = await _raised(asyncpg.connect(f"postgresql://postgres@127.0.0.1:{_closed_port()}/x"))
    wrapped = RuntimeError("the command failed")
    wrapped.__cause__ = cause
    assert database_unavailable(wrapped)


@pytest.mark.parametrize(
    "err",
    [
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        # A pooled connection the killed server left mid-operation (seen in the chaos run).
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in"),
    ],
)
def test_server_refusals_are_unavailable(err: BaseException) -> None:
    assert database_unavailable(err)


async def test_a_closed_connection_used_again_is_a_bug(servers: Servers) -> None:
    conn = await asyncpg.connect(servers.database_url)
    await conn.close()
    err = await _raised(conn.fetchval("SELECT 1"))
    assert isinstance(err, asyncpg.InterfaceError)
    assert not database_unavailable(err)
    assert to_fault(err).status == 500


async def test_sql_errors_are_bugs(servers: Servers) -> None:
    conn = await asyncpg.connect(servers.database_url)
    try:
        err = await _raised(conn.fetchval("SELECT * FROM no_such_table_here"))
    finally:
        await conn.close()
    assert not database_unavailable(err)
    assert to_fault(err).status == 500


async def test_socket_errors_of_other_servers_are_not_the_database() -> None:
    async with aiohttp.ClientSession() as session:
        err = await _raised(session.get(f"http://127.0.0.1:{_closed_port()}/"))
    assert isinstance(err, OSError)
    assert not database_unavailable(err)
    assert not database_unavailable(ConnectionRefusedError(111, "refused"))
    assert not database_unavailable(TimeoutError())
