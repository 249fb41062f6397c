"""Whether an error means "the database cannot be reached right now" (an outage, which the
process waits out) rather than a bug: one rule for the API's 503 and for the services that
stand by until the database is back."""

from __future__ import annotations

from types import TracebackType

import asyncpg

# What PostgreSQL (or the way to it) answers when it is not there for us right now:
# class 08 (the connection failed, was refused or is gone), the server starting, stopping
# or terminating our backends (57P01-57P03), and no connection slot left (53300). Not
# asyncpg.InterfaceError: asyncpg raises it for misuse (a closed connection object used
# again, wrong arguments), which is a bug and stays a 500. asyncpg's InternalClientError
# ("cannot switch to state 12; another operation (2) is in progress") counts: a pooled
# connection the dying server left in the middle of an operation, handed out again before
# asyncpg saw it close (the chaos suite's PostgreSQL kill answered one request in ~200
# with it); the next connection is a fresh one.
_POSTGRES_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InternalClientError,
)
# Socket errors and timeouts count only when asyncpg raised them (connecting, the pool's
# acquire, command_timeout): the same types from the image service or Nova mean another
# server, which has its own 503.
_TRANSPORT = (OSError, TimeoutError)


def database_unavailable(err: BaseException) -> bool:
    """True when ``err`` (or what it was raised from) says the database cannot be reached."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _POSTGRES_UNAVAILABLE):
            return True
        if isinstance(current, _TRANSPORT) and _raised_in_asyncpg(current.__traceback__):
            return True
        current = current.__cause__ or current.__context__
    return False


def _raised_in_asyncpg(tb: TracebackType | None) -> bool:
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and (module == "asyncpg" or module.startswith("asyncpg.")):
            return True
        tb = tb.tb_next
    return False
