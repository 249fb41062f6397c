"""Prometheus metrics of the API (``GET /metrics``), right whichever api process answers.

Several api processes share one port (SO_REUSEPORT: `cinderblock dev`, `serve api
--workers N`, or separate `serve api` runs), so a scrape reaches one of them at random.
Two kinds of figures are therefore kept two ways:

- What each process counts itself (HTTP requests, latency, requests in flight) goes
  through prometheus_client's multiprocess mode: every process writes its values to
  memory-mapped files in one directory per port, and any of them sums all the files when
  scraped. The directory is ``$PROMETHEUS_MULTIPROC_DIR`` when the operator sets it, else
  ``<tmp>/cinderblock-metrics-<uid>/<host>_<port>``. The first process of a run (none of the
  processes registered there is alive) empties it; a process that stops marks itself dead
  (its in-flight gauge leaves the sum, its counters stay: they must not go backwards), and a
  killed one is marked dead by the next scrape or start. The last process out removes the
  directory, and a start removes those of other ports whose processes were all killed. An
  api on a port of its own (port 0) keeps its figures in memory.
- What describes shared state (the log, consumers, dead letters, quarantine, reachability)
  is read from PostgreSQL and NATS when scraped (``SharedState``), so every process
  answers the same. Counts from the log (events appended, saga outcomes) are kept per
  process and brought up to date from the settled rows after the last ones counted, so a
  scrape reads only what is new.

Labels stay few: a route is its template (``/v3/{project_id}/volumes/{volume_id}``, never
an id), an action is a name of the action table or ``unknown``, a method one of HTTP's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from cinderblock.bus.connection import server_urls
from cinderblock.readmodels.quarantine import summary
from cinderblock.store.eventstore import Position
from cinderblock.store.mapping import event_name

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # a path no route serves (404/405): never the path itself
UNPARSED = "unparsed"  # a request aiohttp's HTTP parser refused (no path known)
# Seconds: the API answers most reads in milliseconds, commands wait for the read model
# (read_wait, 5 s at most).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCRAPE_TIMEOUT = 3.0  # seconds each of PostgreSQL and NATS gets per scrape
TALLY_CHUNK = 50_000  # events counted per query
TALLY_BUDGET = 3.0  # seconds a scrape spends counting the log
# Aggregates whose saga-recorded events are outcomes (quota bookkeeping rides along).
SAGA_TARGETS = frozenset({"Volume", "Snapshot"})


class HttpMetrics:
    """What one api process counts of the requests it answers."""

    def __init__(self, directory: Path | None, actions: Collection[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        own = None if directory is not None else self.registry
        self.actions = frozenset(actions)
        self.requests = Counter(
            "cinderblock_http_requests",
            "HTTP requests answered, by method, route template, action and status.",
            ("method", "route", "action", "status"),
            registry=own,
        )
        self.latency = Histogram(
            "cinderblock_http_request_duration_seconds",
            "Time from the request reaching the API to its answer, by method, route and action.",
            ("method", "route", "action"),
            buckets=BUCKETS,
            registry=own,
        )
        self.in_flight = Gauge(
            "cinderblock_http_requests_in_progress",
            "Requests being answered now (all api processes).",
            multiprocess_mode="livesum",
            registry=own,
        )
        if directory is not None:
            MultiProcessCollector(self.registry, path=str(directory))

    def refused_by_parser(self, status: int) -> None:
        """A request aiohttp's parser refused: counted (no method or route is known, and
        no time: it never started), under route ``unparsed``."""
        self.requests.labels("other", UNPARSED, "", str(status)).inc()

    def observe(self, method: str, route: str, action: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        action = action if not action or action in self.actions else "unknown"
        self.requests.labels(method, route, action, str(status)).inc()
        self.latency.labels(method, route, action).observe(seconds)


# ---------------------------------------------------------------- multiprocess directory


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks after boot), None when it is gone: with the
    pid it names one process, not a later one that reuses the pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


@dataclass
class MultiprocessDir:
    """The directory the api processes of one port share their figures in."""

    path: Path
    owned: bool = True  # ours to remove once its last process leaves (not the operator's)

    @classmethod
    def for_address(cls, host: str, port: int) -> MultiprocessDir:
        given = os.environ.get(MULTIPROC_ENV)
        if given:
            return cls(Path(given), owned=False)
        base = Path(tempfile.gettempdir()) / f"cinderblock-metrics-{os.getuid()}"
        return cls(base / f"{host.replace('/', '_') or 'any'}_{port}")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Path]:
        """The directory's lock held; retried when another process removed the directory
        (its last one leaving, or a sweep of abandoned ones) while this one took it."""
        for _ in range(5):
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                lock = open(self.path / ".lock", "a")  # noqa: SIM115 - held across the yield
            except FileNotFoundError:
                continue
            with lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    if os.fstat(lock.fileno()).st_nlink == 0:  # removed meanwhile
                        continue
                    members = self.path / "members"
                    members.mkdir(exist_ok=True)
                    yield members
                    return
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        raise OSError(f"cannot lock {self.path}")

    def _sweep(self, members: Path) -> bool:
        """Mark the registered processes that died; True if any registered one lives."""
        alive = False
        for member in members.iterdir():
            pid = int(member.name) if member.name.isdigit() else 0
            if pid and _start_time(pid) == member.read_text():
                alive = True
                continue
            if pid:
                mark_process_dead(pid, str(self.path))
            member.unlink(missing_ok=True)
        return alive

    def join(self) -> None:
        """Register this process; the first of a run empties what an earlier run left."""
        with self._locked() as members:
            if not self._sweep(members):
                for stale in self.path.glob("*.db"):
                    stale.unlink(missing_ok=True)
            (members / str(os.getpid())).write_text(_start_time(os.getpid()) or "")

    def remove_abandoned_siblings(self) -> None:
        """Remove the directories of other ports whose processes were all killed (no one
        was left to remove them), skipping any another process holds at the moment."""
        if not self.owned:
            return
        for sibling in self.path.parent.iterdir():
            if sibling == self.path or not (sibling / "members").is_dir():
                continue
            with contextlib.suppress(OSError), open(sibling / ".lock", "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if not MultiprocessDir(sibling)._sweep(sibling / "members"):
                    shutil.rmtree(sibling, ignore_errors=True)

    def sweep(self) -> None:
        """Mark processes killed since (a scrape does this before summing)."""
        with self._locked() as members:
            self._sweep(members)

    def leave(self) -> None:
        """Unregister this process; the last one out removes the directory it owns."""
        with self._locked() as members:
            mark_process_dead(os.getpid(), str(self.path))
            (members / str(os.getpid())).unlink(missing_ok=True)
            if self.owned and not self._sweep(members):
                shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def multiprocess(host: str, port: int) -> Iterator[MultiprocessDir | None]:
    """The shared directory of the api processes on ``host:port`` while the context lasts (None
    for port 0: a port of this process's own, figures in memory).

    prometheus_client reads the directory from ``PROMETHEUS_MULTIPROC_DIR`` and writes
    values through ``values.ValueClass``; both are set for this process and put back after,
    so a test process running an api in-process is left as it was."""
    if port == 0:
        yield None
        return
    shared = MultiprocessDir.for_address(host, port)
    saved_env, saved_class = os.environ.get(MULTIPROC_ENV), values.ValueClass
    try:
        shared.join()
    except OSError as err:  # metrics never keep the API from serving
        log.warning("metrics: %s unusable, counting in memory: %s", shared.path, err)
        yield None
        return
    with contextlib.suppress(OSError):
        shared.remove_abandoned_siblings()
    os.environ[MULTIPROC_ENV] = str(shared.path)
    values.ValueClass = values.MultiProcessValue()
    try:
        yield shared
    finally:
        with contextlib.suppress(OSError):
            shared.leave()
        values.ValueClass = saved_class
        if saved_env is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = saved_env


# ---------------------------------------------------------------- shared state at scrape

_TALLY = """
WITH new AS MATERIALIZED (
    SELECT tx_id, position, topic, meta->>'actor' AS actor FROM events
    WHERE (tx_id, position) > ($1::text::xid8, $2)
      AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY events.tx_id, events.position LIMIT $3
), last AS (
    SELECT new.tx_id::text::bigint AS tx_id, new.position FROM new
    ORDER BY new.tx_id DESC, new.position DESC LIMIT 1
)
SELECT topic, actor, count(*) AS n,
       (SELECT tx_id FROM last) AS last_tx, (SELECT position FROM last) AS last_position
FROM new GROUP BY topic, actor
"""
# How far each tailing consumer (relay, projector: a row of ``tracking``) is behind the log.
_BEHIND = """
SELECT t.name,
    (SELECT count(*) FROM events e
     WHERE (e.tx_id, e.position) > (t.tx_id::text::xid8, t.position)) AS behind,
    (SELECT e.recorded_at FROM events e
     WHERE (e.tx_id, e.position) > (t.tx_id::text::xid8, t.position)
     ORDER BY e.tx_id, e.position LIMIT 1) AS oldest,
    clock_timestamp() AS now
FROM tracking t ORDER BY t.name
"""
_DEAD_LETTERS = "SELECT consumer, count(*) AS n FROM dead_letters GROUP BY consumer"


@dataclass
class LogTally:
    """Events in the log by name and actor, counted up to ``upto`` (settled rows only, so a
    row committed late by an older transaction is never skipped)."""

    upto: Position = field(default_factory=lambda: Position(0, 0))
    counts: dict[tuple[str, str | None], int] = field(default_factory=dict)
    complete: bool = False  # counted up to the settled end at least once

    async def catch_up(self, conn: asyncpg.Connection, limit: int = TALLY_CHUNK) -> bool:
        """Count the next ``limit`` settled events at most; True once none are left."""
        rows = await conn.fetch(_TALLY, str(self.upto.tx_id), self.upto.position, limit)
        seen = 0
        for r in rows:
            key = (event_name(r["topic"]), r["actor"])
            self.counts[key] = self.counts.get(key, 0) + r["n"]
            seen += r["n"]
        if rows:
            self.upto = Position(rows[0]["last_tx"], rows[0]["last_position"])
        return seen < limit

    def by_aggregate(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for (name, _), n in self.counts.items():
            kind = name.partition(".")[0]
            found[kind] = found.get(kind, 0) + n
        return found

    def saga_outcomes(self) -> dict[tuple[str, str], int]:
        """(saga, completed|compensated) → events a saga recorded on a volume or snapshot;
        a compensation is a ``…Failed`` event."""
        found: dict[tuple[str, str], int] = {}
        for (name, actor), n in self.counts.items():
            if not actor or not actor.startswith("saga:"):
                continue
            if name.partition(".")[0] not in SAGA_TARGETS:
                continue
            outcome = "compensated" if name.endswith("Failed") else "completed"
            key = (actor.removeprefix("saga:"), outcome)
            found[key] = found.get(key, 0) + n
        return found


class SharedState:
    """A collector of figures read from PostgreSQL and NATS: ``refresh`` reads them (before
    the registry renders), ``collect`` hands over what the last refresh read."""

    def __init__(self, nats_url: str, stream: str) -> None:
        self.nats_url = nats_url
        self.stream = stream
        self.tally = LogTally()
        self._families: list[Metric] = []
        self._nc: Client | None = None
        self._lock = asyncio.Lock()
        self._unavailable: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        yield from self._families

    def describe(self) -> list[Metric]:
        return []

    async def refresh(self, pool: asyncpg.Pool | None) -> None:
        async with self._lock:
            families: list[Metric] = []
            database_up = await self._database(pool, families) if pool is not None else False
            families.append(_gauge("cinderblock_database_up", "PostgreSQL answers.", database_up))
            nats_up = await self._nats(families)
            families.append(_gauge("cinderblock_nats_up", "NATS JetStream answers.", nats_up))
            self._families = families

    def _down(self, server: str, err: BaseException) -> None:
        """One warning when a server stops answering scrapes, not one per scrape."""
        if server not in self._unavailable:
            self._unavailable.add(server)
            log.warning("metrics: %s unavailable: %s", server, str(err) or type(err).__name__)

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self._nc.close()
            self._nc = None

    async def _database(self, pool: asyncpg.Pool, families: list[Metric]) -> bool:
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT), pool.acquire() as conn:
                behind = await conn.fetch(_BEHIND)
                dead = await conn.fetch(_DEAD_LETTERS)
                held = await summary(conn)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            self._down("database", err)
            return False
        self._unavailable.discard("database")
        await self._count_log(pool)
        families += self._log_counts() if self.tally.complete else []
        lag_events = GaugeMetricFamily(
            "cinderblock_log_consumer_lag_events",
            "Events in the log after a tailing consumer's tracked position (relay, projector).",
            labels=("consumer",),
        )
        lag_seconds = GaugeMetricFamily(
            "cinderblock_log_consumer_lag_seconds",
            "Age of the oldest event a tailing consumer has not handled yet (0: caught up).",
            labels=("consumer",),
        )
        for r in behind:
            lag_events.add_metric((r["name"],), r["behind"])
            oldest: datetime | None = r["oldest"]
            age = 0.0 if oldest is None else max((r["now"] - oldest).total_seconds(), 0.0)
            lag_seconds.add_metric((r["name"],), age)
        letters = GaugeMetricFamily(
            "cinderblock_dead_letters",
            "Messages consumers gave up on, kept in dead_letters, by consumer.",
            labels=("consumer",),
        )
        for r in dead:
            letters.add_metric((r["consumer"],), r["n"])
        quarantined = GaugeMetricFamily(
            "cinderblock_quarantined_aggregates",
            "Aggregates a consumer holds back because an event of theirs cannot be applied.",
            labels=("consumer",),
        )
        for consumer, n in held.items():
            quarantined.add_metric((consumer,), n)
        families += [lag_events, lag_seconds, letters, quarantined]
        return True

    async def _count_log(self, pool: asyncpg.Pool) -> None:
        """Bring the log counts up to date, in chunks, for TALLY_BUDGET seconds at most: a
        process's first scrape of a long log may take several scrapes, and until its counts
        are whole they are left out (a partial count would look like a counter reset)."""
        try:
            async with asyncio.timeout(TALLY_BUDGET), pool.acquire() as conn:
                while not await self.tally.catch_up(conn):
                    pass
                self.tally.complete = True
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            log.info("metrics: log counts not whole yet: %s", type(err).__name__)

    def _log_counts(self) -> list[Metric]:
        events = CounterMetricFamily(
            "cinderblock_events",
            "Events appended to the log, by aggregate type (all writers).",
            labels=("aggregate_type",),
        )
        for kind, n in sorted(self.tally.by_aggregate().items()):
            events.add_metric((kind,), n)
        sagas = CounterMetricFamily(
            "cinderblock_saga_outcomes",
            "Outcome events sagas recorded on volumes and snapshots, by saga (action) and "
            "outcome: completed, or compensated (a …Failed event).",
            labels=("action", "outcome"),
        )
        for (action, outcome), n in sorted(self.tally.saga_outcomes().items()):
            sagas.add_metric((action, outcome), n)
        return [events, sagas]

    async def _connection(self) -> Client:
        """A connection of the scrapes' own: made (once through the servers named) by the
        scrape that finds none, never reconnecting in the background; a lost one is made
        again by the next scrape. Its errors are the scrape's to report, once."""
        if self._nc is None or not self._nc.is_connected:
            if self._nc is not None:
                with contextlib.suppress(nats.errors.Error, OSError):
                    await self._nc.close()
            self._nc = None
            self._nc = await nats.connect(
                servers=server_urls(self.nats_url),
                name="cinderblock-api-metrics",
                allow_reconnect=False,
                max_reconnect_attempts=1,  # nats-py: each server twice, then NoServersError
                reconnect_time_wait=0.1,
                connect_timeout=2,
                error_cb=_quiet,
            )
        return self._nc

    async def _nats(self, families: list[Metric]) -> bool:
        if not self.nats_url:
            return False
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                js = (await self._connection()).jetstream()
                await js.account_info()  # JetStream answers, whether the stream exists yet
                try:
                    consumers = await js.consumers_info(self.stream)
                except nats.js.errors.NotFoundError:  # no service has made it yet
                    consumers = []
        except (OSError, TimeoutError, nats.errors.Error, ValueError) as err:
            self._down("NATS", err)
            return False
        self._unavailable.discard("NATS")
        pending = GaugeMetricFamily(
            "cinderblock_consumer_pending_messages",
            "Messages of the stream a durable consumer has not been delivered yet.",
            labels=("consumer",),
        )
        unacked = GaugeMetricFamily(
            "cinderblock_consumer_ack_pending_messages",
            "Messages delivered to a durable consumer and not acknowledged yet.",
            labels=("consumer",),
        )
        redelivered = GaugeMetricFamily(
            "cinderblock_consumer_redelivered_messages",
            "Messages being redelivered to a durable consumer.",
            labels=("consumer",),
        )
        for info in consumers:
            if not info.config.durable_name:
                continue
            name = info.config.durable_name
            pending.add_metric((name,), info.num_pending or 0)
            unacked.add_metric((name,), info.num_ack_pending or 0)
            redelivered.add_metric((name,), info.num_redelivered or 0)
        families += [pending, unacked, redelivered]
        return True


async def _quiet(err: Exception) -> None:
    log.debug("metrics: NATS: %s", err)


def _gauge(name: str, documentation: str, value: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=1 if value else 0)


@dataclass
class Metrics:
    """Everything ``GET /metrics`` renders: this process's (or every api process's) HTTP
    figures and the shared state read at scrape time."""

    http: HttpMetrics
    shared: SharedState
    directory: MultiprocessDir | None = None

    def __post_init__(self) -> None:
        self.http.registry.register(self.shared)

    async def render(self, pool: asyncpg.Pool | None) -> bytes:
        await self.shared.refresh(pool)
        if self.directory is not None:
            await asyncio.to_thread(self.directory.sweep)
        return await asyncio.to_thread(generate_latest, self.http.registry)


def build_metrics(
    directory: MultiprocessDir | None, actions: Collection[str], nats_url: str, stream: str
) -> Metrics:
    http = HttpMetrics(directory.path if directory is not None else None, actions)
    return Metrics(http, SharedState(nats_url, stream), directory)


__all__ = [
    "CONTENT_TYPE",
    "UNMATCHED",
    "HttpMetrics",
    "Metrics",
    "MultiprocessDir",
    "build_metrics",
    "multiprocess",
]
