"""Which failures a retry fixes (retried as before) and which quarantine an aggregate."""

from __future__ import annotations

import asyncpg
import nats.errors
import pytest

from cinderblock.bus.jetstream import UnpublishableError
from cinderblock.readmodels.quarantine import describe, retry_will_fix

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "err",
    [
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout"),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.DiskFullError("could not extend file"),
        asyncpg.exceptions.InFailedSQLTransactionError("current transaction is aborted"),
        asyncpg.exceptions.InsufficientPrivilegeError("permission denied for table volumes"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in"),
        ConnectionResetError(),
        TimeoutError(),
        nats.errors.TimeoutError(),
    ],
    ids=type,
)
def test_failures_of_the_moment_are_retried(err: BaseException) -> None:
    assert retry_will_fix(err)


@pytest.mark.parametrize(
    "err",
    [
        asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence for encoding"),
        asyncpg.exceptions.NumericValueOutOfRangeError("integer out of range"),
        asyncpg.exceptions.UniqueViolationError("duplicate key value"),
        asyncpg.exceptions.NotNullViolationError("null value in column"),
        asyncpg.exceptions.UndefinedColumnError("column does not exist"),
        asyncpg.exceptions.DataError("invalid input for query argument $4"),
        KeyError("bootable"),
        TypeError("missing 1 required positional argument"),
        ValueError("badly formed hexadecimal UUID string"),
        UnpublishableError("v:1", "2000100 bytes, the server takes 1048576"),
    ],
    ids=type,
)
def test_failures_the_event_causes_quarantine_it(err: BaseException) -> None:
    assert not retry_will_fix(err)


def test_an_error_quoting_the_bad_string_can_be_stored() -> None:
    text = describe(ValueError("bad key fuzz_key\x00\ud800\nDETAIL: here"))
    assert text == "ValueError: bad key fuzz_key\\x00\\ud800 DETAIL: here"
    text.encode("utf-8")  # no lone surrogate left
    assert "\x00" not in text
