"""The process's view of the aggregates it writes, and group commit.

Two things make concurrent commands cooperate instead of fight:

- **Heads.** For every aggregate this process has loaded or written, the newest state it
  knows: the committed state, then the states its own appended-but-not-yet-committed
  commands lead to, in order. A command loads the newest state (pending ones included), so
  sixteen creates in one project build one after another on the project's quota instead of
  all on the same committed version. The check that nobody moved an aggregate on since a
  command loaded it is made here first, synchronously (a command that lost the race
  retries at once, without a database round trip), and then by the database's primary key
  against other processes.
- **Group commit.** Saves are queued; one flusher task writes everything queued in one
  ``INSERT`` statement (one transaction, one WAL flush), whatever aggregates and commands
  it holds, and gives each command its own verdict. If the statement hits a version
  another process wrote, the batch is retried command by command so only the commands that
  really conflict (and the ones that built on them) fail.

A command that built on another's pending state depends on it: if that one fails, so does
the dependent (it is retried by its caller against fresh state). A command that only read a
pending state and answered without writing (a refusal, say) waits for that state to commit
before it answers, so no answer rests on something that never happened (`Attempt`).

**Heard appends.** Other processes append too (the sagas, a second API worker). Without
more, a command's load asks the database for events newer than the head it holds: one
round trip per command. Inside `LogWriter.invalidations` the process listens to the log's
NOTIFY, whose payload names the writing process and the aggregates it appended to; a head
another process moved on is marked stale, and a command loads a head that is not stale
without asking. What keeps this exact when a notification arrives late: a command that
writes is checked by the database's primary key anyway (a stale base conflicts, the head is
marked stale and the command retried), and a command that answers without writing on a head
it did not ask the database about checks that head's version first (`Attempt.settle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import pickle
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
from eventsourcing.persistence import StoredEvent

from cinderblock.store.schema import EVENTS_CHANNEL

log = logging.getLogger(__name__)

# Rows per statement: bounds the statement's size (and a failed batch's retry cost).
MAX_BATCH_ROWS = 2_000
# Seconds between tries to listen again after the listener connection was lost.
_RELISTEN = 1.0
# Seconds between the writer's "group commit" log lines (only when it wrote meanwhile).
REPORT_EVERY = 10.0

_INSERT = f"""
WITH ins AS (
    INSERT INTO events (originator_id, originator_version, topic, state, meta)
    SELECT i, v, t, s, m::jsonb FROM unnest($1::uuid[], $2::int[], $3::text[], $4::bytea[],
                                          $5::text[]) AS u(i, v, t, s, m)
    RETURNING originator_id, originator_version, position, tx_id
)
SELECT ins.originator_id, ins.originator_version, ins.position,
       ins.tx_id::text::bigint AS tx_id
FROM ins, (SELECT pg_notify('{EVENTS_CHANNEL}', $6::text)) AS n
"""
# NOTIFY payloads must stay under 8000 bytes: past this many ids, "everything moved".
_NOTIFY_MAX_IDS = 200
_EVERYTHING = "*"

_NEWEST_VERSIONS = """
SELECT originator_id, max(originator_version) AS version FROM events
WHERE originator_id = ANY($1::uuid[]) GROUP BY originator_id
"""

_SELECT_AGGREGATE = """
SELECT originator_version, topic, state FROM events
WHERE originator_id = $1 AND originator_version > $2 ORDER BY originator_version
"""


class ConcurrencyConflictError(Exception):
    """Raised when another writer appended to one of the aggregates first."""


class LocalConflictError(ConcurrencyConflictError):
    """Another command of this process moved the aggregate on between this command's load
    and its save: retry at once, the newer state is already in memory."""


class DependencyFailedError(ConcurrencyConflictError):
    """A pending state this command built on (or read) was never committed."""


@dataclass(eq=False)
class _Request:
    """One command's save: its rows, what it built on, its verdict."""

    rows: list[StoredEvent]
    meta: str
    aggregate_ids: list[UUID]
    deps: list[_Request]
    future: asyncio.Future[tuple[int, int]]
    unasked: bool = False  # built on a head loaded without asking the database
    dependents: list[_Request] = field(default_factory=list)
    state: str = "queued"  # queued | committed | failed
    queued_at: float = 0.0  # event-loop time it was queued (for the group-commit figures)

    @property
    def failed(self) -> bool:
        return self.state == "failed"


_NOTHING = b""  # the committed state of an aggregate whose committed state is unknown


@dataclass
class _Head:
    """What one aggregate looks like to this process: ``versions[0]`` is the committed
    state (request None), the rest are pending states in the order they were appended."""

    versions: list[tuple[_Request | None, bytes, int]]
    # Another process may have appended since the committed state was read: ask the
    # database before building on it.
    stale: bool = False
    heard: int = 0  # times it was marked stale (a load's query may predate the last one)

    def mark_stale(self) -> None:
        self.stale = True
        self.heard += 1

    @property
    def top(self) -> tuple[_Request | None, bytes, int]:
        return self.versions[-1]

    @property
    def pending(self) -> bool:
        return len(self.versions) > 1


class Attempt:
    """One try of a command. Collects the pending states it read, so that an answer given
    without writing waits until what it read is committed (`settle`)."""

    def __init__(self) -> None:
        self.read: list[_Request] = []
        # Committed heads loaded without asking the database (id -> version), and by whom.
        self.unasked: dict[UUID, tuple[LogWriter, int]] = {}
        # Pending states of this process it read (id -> version), and by whom: once they are
        # committed, another process may append on top of them before this process hears.
        self.read_pending: dict[UUID, tuple[LogWriter, int]] = {}
        self.wrote: set[UUID] = set()  # aggregates this attempt appended to (committed)

    async def settle(self) -> None:
        """Raise DependencyFailedError if anything this attempt read never committed, and,
        for an answer given without writing, LocalConflictError (retry at once) if a head
        it loaded without asking the database, or a pending state of this process it read,
        has moved on in another process. (The second: a saga whose own append of v20 was
        committed but not yet heard as such read v20, while the API had appended v21 on
        top; its "nothing to record" answer lost a delete in the chaos suite.)

        An attempt that wrote is never retried from here: its append is committed (the
        primary key checked what it wrote), and what it only read is as current as a
        query at load time would have made it."""
        for request in self.read:
            if request.state == "queued":
                with contextlib.suppress(Exception):
                    await asyncio.shield(request.future)
            if request.failed:
                raise DependencyFailedError("a state this command read was not committed")
        unasked, self.unasked = self.unasked, {}
        read_pending, self.read_pending = self.read_pending, {}
        if self.wrote:
            return
        by_writer: dict[LogWriter, dict[UUID, int]] = {}
        for aggregate_id, (writer, version) in [*unasked.items(), *read_pending.items()]:
            known = by_writer.setdefault(writer, {})
            known[aggregate_id] = max(version, known.get(aggregate_id, 0))
        for writer, versions in by_writer.items():
            await writer.confirm(versions)


@dataclass
class GroupCommitStats:
    """What the writer did since it started (or since the last report): append statements
    (each one transaction, one WAL flush), the commands and rows they carried, how long
    commands waited in the queue before their statement went out, and how long the
    statements took."""

    statements: int = 0
    commands: int = 0
    rows: int = 0
    largest: int = 0  # most commands in one statement
    wait_s: float = 0.0  # summed over commands
    wait_max_s: float = 0.0
    flush_s: float = 0.0  # summed over statements

    def add(self, commands: int, rows: int, waits: Sequence[float], took: float) -> None:
        self.statements += 1
        self.commands += commands
        self.rows += rows
        self.largest = max(self.largest, commands)
        self.wait_s += sum(waits)
        self.wait_max_s = max([self.wait_max_s, *waits])
        self.flush_s += took

    def summary(self, seconds: float) -> dict[str, float]:
        per = max(self.statements, 1)
        return {
            "seconds": round(seconds, 1),
            "statements": self.statements,
            "statements_per_s": round(self.statements / seconds, 1) if seconds > 0 else 0.0,
            "commands": self.commands,
            "rows": self.rows,
            "commands_per_statement": round(self.commands / per, 2),
            "largest_statement": self.largest,
            "queue_wait_mean_ms": round(1000 * self.wait_s / max(self.commands, 1), 3),
            "queue_wait_max_ms": round(1000 * self.wait_max_s, 3),
            "statement_mean_ms": round(1000 * self.flush_s / per, 3),
        }


_ATTEMPT: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "cinderblock_attempt", default=None
)


def current_attempt() -> Attempt | None:
    return _ATTEMPT.get()


@contextlib.contextmanager
def attempt() -> Iterator[Attempt]:
    """Run one try of a command inside this: loads see pending states and record them."""
    current = Attempt()
    token = _ATTEMPT.set(current)
    try:
        yield current
    finally:
        _ATTEMPT.reset(token)


class LogWriter:
    """Heads and the group-commit queue of one process for one database.

    Every event store of a process writing the same database should share one writer (see
    `shared_writer`): commands of the API and of the sagas then queue behind each other
    instead of conflicting.
    """

    def __init__(self, pool: asyncpg.Pool, *, cache_size: int = 10_000) -> None:
        self._pools: list[asyncpg.Pool] = [pool]
        self._heads: OrderedDict[UUID, _Head] = OrderedDict()
        self._cache_size = cache_size
        self._queue: list[_Request] = []
        self._flusher: asyncio.Task[None] | None = None
        self.statements = 0  # appends sent (for tests and benchmarks)
        self.conflicts = 0  # commands refused by the database's version check
        self.stats = GroupCommitStats()  # since the last "group commit" log line
        self._reported_at: float | None = None
        self._token = uuid.uuid4().hex[:16]  # names this writer in its NOTIFY payloads
        self._listeners: set[object] = set()  # live connections of `invalidations`
        self.unasked_loads = 0  # loads served without a query (for tests and benchmarks)

    def attach(self, pool: asyncpg.Pool) -> None:
        if pool not in self._pools:
            self._pools.append(pool)

    @property
    def pool(self) -> asyncpg.Pool:
        self._pools = [p for p in self._pools if not p.is_closing()] or self._pools[-1:]
        return self._pools[0]

    # ------------------------------------------------------------ heard appends

    @contextlib.asynccontextmanager
    async def invalidations(self, pool: asyncpg.Pool) -> AsyncIterator[None]:
        """While inside, listen to other processes' appends: commands then build on the
        heads this process holds without a query each (see the module's docstring). One
        connection of ``pool`` (the caller's: it is released to it before the caller closes
        it) is held for the listener. If it is lost (the database went away), every head is
        asked about again and a new listener is sought every ``_RELISTEN`` seconds; on
        leaving, every head is asked about again."""
        listening = await self._listen(pool)  # listening before the first command
        keeper = asyncio.create_task(self._keep_listening(pool, *listening), name="log-listener")
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            self._mark_all_stale()

    async def _listen(
        self, pool: asyncpg.Pool
    ) -> tuple[asyncio.Future[None], Callable[[], Awaitable[None]]]:
        """Acquire a listener connection: a future that ends when the connection is lost,
        and what releases it."""
        conn: asyncpg.Connection = await pool.acquire()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_lost(_conn: object) -> None:
            if conn in self._listeners:
                log.warning("the event log's listener connection was lost: heads are asked")
            self._listeners.discard(conn)
            self._mark_all_stale()
            if not done.done():
                done.set_result(None)

        async def release() -> None:
            self._listeners.discard(conn)
            self._mark_all_stale()
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.remove_listener(EVENTS_CHANNEL, self._on_append)
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.remove_termination_listener(on_lost)
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await pool.release(conn)

        try:
            conn.add_termination_listener(on_lost)
            await conn.add_listener(EVENTS_CHANNEL, self._on_append)
        except BaseException:
            await release()
            raise
        self._listeners.add(conn)
        self._mark_all_stale()  # heads read while nobody listened may have missed appends
        return done, release

    async def _keep_listening(
        self,
        pool: asyncpg.Pool,
        lost: asyncio.Future[None],
        release: Callable[[], Awaitable[None]],
    ) -> None:
        """Whenever the listener is lost, release it and listen again (every
        ``_RELISTEN`` seconds until the database answers); on cancellation, release it."""
        held: Callable[[], Awaitable[None]] | None = release
        try:
            while True:
                await asyncio.shield(lost)
                if held is not None:
                    await held()
                    held = None
                while held is None:
                    await asyncio.sleep(_RELISTEN)
                    try:
                        lost, held = await self._listen(pool)
                    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                        continue
                log.info("the event log's listener is back: held heads are used again")
        finally:
            if held is not None:
                await held()

    def _on_append(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        token, _, ids = payload.partition(" ")
        if token == self._token:
            return
        if not ids or ids == _EVERYTHING:  # an older writer, or too many to name
            self._mark_all_stale()
            return
        for text in ids.split(","):
            try:
                head = self._heads.get(UUID(text))
            except ValueError:
                self._mark_all_stale()
                return
            if head is not None:
                head.mark_stale()

    def _mark_all_stale(self) -> None:
        for head in self._heads.values():
            head.mark_stale()

    def _payload(self, batch: list[_Request]) -> str:
        ids = {str(a) for r in batch for a in r.aggregate_ids}
        if len(ids) > _NOTIFY_MAX_IDS:
            return f"{self._token} {_EVERYTHING}"
        return f"{self._token} {','.join(sorted(ids))}"

    async def confirm(self, versions: Mapping[UUID, int]) -> None:
        """Raise LocalConflictError if any of these aggregates has events past the given
        version (its head is then stale: the retry asks the database)."""
        rows = await self.pool.fetch(_NEWEST_VERSIONS, list(versions))
        moved = [r["originator_id"] for r in rows if r["version"] > versions[r["originator_id"]]]
        for aggregate_id in moved:
            head = self._heads.get(aggregate_id)
            if head is not None:
                head.mark_stale()
        if moved:
            raise LocalConflictError(f"{moved[0]} moved on in another process")

    # ------------------------------------------------------------ reading

    async def load(self, aggregate_id: UUID, mapper: Any) -> Any:
        """The newest state of the aggregate (None if it has no events). Inside an
        `attempt`, pending states of this process count and are remembered as read;
        outside, only committed ones do."""
        current = _ATTEMPT.get()
        head = self._heads.get(aggregate_id)
        if head is not None and head.pending and current is not None:
            request, state, version = head.top
            assert request is not None
            current.read.append(request)
            current.read_pending[aggregate_id] = (self, version)
            self._heads.move_to_end(aggregate_id)
            return pickle.loads(state)
        base = head.versions[0][1] if head is not None else _NOTHING
        if current is not None and head is not None and base and not head.stale and self._listeners:
            self.unasked_loads += 1
            current.unasked[aggregate_id] = (self, head.versions[0][2])
            self._heads.move_to_end(aggregate_id)
            return pickle.loads(base)
        aggregate: Any = pickle.loads(base) if base else None
        after = aggregate.version if aggregate is not None else 0
        heard = head.heard if head is not None else 0
        rows = await self.pool.fetch(_SELECT_AGGREGATE, aggregate_id, after)
        for row in rows:
            stored = StoredEvent(
                aggregate_id, row["originator_version"], row["topic"], row["state"]
            )
            aggregate = mapper.to_domain_event(stored).mutate(aggregate)
        now = self._heads.get(aggregate_id)
        if aggregate is None or current is None or (now is not None and now.pending):
            # Outside a command nothing is kept; a pending append on top of the old state
            # will conflict and be retried.
            return aggregate
        # The query saw every event up to now, unless another process's append was heard
        # while it ran (it may not have seen that one).
        heard_meanwhile = now is not head or (now is not None and now.heard != heard)
        if rows or now is None:
            now = self._heads[aggregate_id] = _Head([(None, _dump(aggregate), aggregate.version)])
            self._trim()
        now.stale = heard_meanwhile
        return aggregate

    def has_pending(self, aggregate_id: UUID) -> bool:
        """Whether this process appended to the aggregate and awaits the verdict."""
        head = self._heads.get(aggregate_id)
        return head is not None and head.pending

    def forget(self, aggregate_id: UUID) -> None:
        head = self._heads.get(aggregate_id)
        if head is not None and not head.pending:
            del self._heads[aggregate_id]

    # ------------------------------------------------------------ writing

    async def append(
        self, aggregates: Sequence[tuple[Any, list[StoredEvent]]], meta: Mapping[str, Any]
    ) -> tuple[int, int]:
        """Queue the rows of one command and wait for its verdict: (tx_id, last position).
        ``aggregates`` pairs each aggregate (after its events) with its stored events."""
        deps: list[_Request] = []
        current = _ATTEMPT.get()
        if current is not None:
            deps.extend(current.read)
        # The same check the database makes, against what this process already appended.
        for aggregate, stored in aggregates:
            base = stored[0].originator_version - 1
            head = self._heads.get(aggregate.id)
            if head is not None and head.top[2] != base:
                if head.pending or base < head.top[2]:
                    raise LocalConflictError(f"{aggregate.id} moved on from version {base}")
                # Built on a state newer than the committed head this process holds (read
                # from the database, outside a command): the head is only behind, and the
                # database decides.
                del self._heads[aggregate.id]
                head = None
            if head is not None and head.top[0] is not None:
                deps.append(head.top[0])
        if any(d.failed for d in deps):
            raise DependencyFailedError("a state this command built on was not committed")
        request = _Request(
            rows=[s for _, stored in aggregates for s in stored],
            meta=json.dumps(dict(meta), default=str),
            aggregate_ids=[a.id for a, _ in aggregates],
            deps=deps,
            future=asyncio.get_running_loop().create_future(),
            queued_at=asyncio.get_running_loop().time(),
            unasked=current is not None and any(a.id in current.unasked for a, _ in aggregates),
        )
        for aggregate, stored in aggregates:
            head = self._heads.get(aggregate.id)
            if head is None:
                base = stored[0].originator_version - 1
                head = self._heads[aggregate.id] = _Head([(None, _NOTHING, base)])
            head.versions.append((request, _dump(aggregate), aggregate.version))
            self._heads.move_to_end(aggregate.id)
        for dep in deps:
            if dep.state == "queued":
                dep.dependents.append(request)
        self._queue.append(request)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(), name="event-log-writer")
        # Shielded: a caller that goes away (client disconnect) does not take the command
        # back; others may already have built on it.
        at = await asyncio.shield(request.future)
        if current is not None:
            current.wrote.update(request.aggregate_ids)
        return at

    async def _flush_all(self) -> None:
        batch: list[_Request] = []
        try:
            while self._queue:
                batch, rows = [], 0
                while self._queue and (
                    not batch or rows + len(self._queue[0].rows) <= MAX_BATCH_ROWS
                ):
                    request = self._queue.pop(0)
                    if request.state == "queued":
                        batch.append(request)
                        rows += len(request.rows)
                if batch:
                    started = asyncio.get_running_loop().time()
                    await self._flush(batch)
                    self._count(batch, started)
        except BaseException as err:  # cancelled (shutdown): nobody may wait forever
            left, self._queue = batch + self._queue, []
            for request in left:
                self._fail(request, ConcurrencyConflictError(f"writer stopped: {err!r}"))
            raise
        self._trim()

    def _count(self, batch: list[_Request], started: float) -> None:
        now = asyncio.get_running_loop().time()
        rows = sum(len(r.rows) for r in batch)
        self.stats.add(len(batch), rows, [started - r.queued_at for r in batch], now - started)
        if self._reported_at is None:
            self._reported_at = started
        elif now - self._reported_at >= REPORT_EVERY:
            self.report(now)

    def report(self, now: float | None = None) -> dict[str, float]:
        """Log what the writer did since the last report (one structured line) and start
        counting afresh; returns the figures."""
        now = asyncio.get_running_loop().time() if now is None else now
        seconds = now - (self._reported_at if self._reported_at is not None else now)
        figures = self.stats.summary(seconds)
        log.info(
            "group commit: %d commands in %d statements over %.1f s (%.2f per statement, "
            "largest %d), queue wait mean %.2f ms",
            figures["commands"],
            figures["statements"],
            seconds,
            figures["commands_per_statement"],
            figures["largest_statement"],
            figures["queue_wait_mean_ms"],
            extra={"group_commit": figures},
        )
        self.stats, self._reported_at = GroupCommitStats(), now
        return figures

    async def _flush(self, batch: list[_Request]) -> None:
        try:
            await self._insert(batch)
        except asyncpg.UniqueViolationError:
            # Another process wrote one of these versions: find out whose, command by command.
            for request in batch:
                if request.state != "queued":
                    continue
                if any(d.failed for d in request.deps):
                    self._fail(request, DependencyFailedError("built on a failed command"))
                    continue
                try:
                    await self._insert([request])
                except asyncpg.UniqueViolationError as err:
                    self.conflicts += 1
                    for aggregate_id in request.aggregate_ids:  # its base was not the newest
                        head = self._heads.get(aggregate_id)
                        if head is not None:
                            head.mark_stale()
                    # Built on a head it did not ask the database about: retry at once.
                    error = LocalConflictError if request.unasked else ConcurrencyConflictError
                    self._fail(request, error(str(err)))
                except Exception as err:
                    self._fail(request, err)
        except Exception as err:
            for request in batch:
                self._fail(request, err)

    async def _insert(self, batch: list[_Request]) -> None:
        stored = [(r, s) for r in batch for s in r.rows]
        self.statements += 1
        result = await self.pool.fetch(
            _INSERT,
            [s.originator_id for _, s in stored],
            [s.originator_version for _, s in stored],
            [s.topic for _, s in stored],
            [s.state for _, s in stored],
            [r.meta for r, _ in stored],
            self._payload(batch),
        )
        if not result:
            raise RuntimeError("append returned no rows")
        tx_id = result[0]["tx_id"]
        positions = {(r["originator_id"], r["originator_version"]): r["position"] for r in result}
        for request in batch:
            last = max(positions[(s.originator_id, s.originator_version)] for s in request.rows)
            self._commit(request, (tx_id, last))

    # ------------------------------------------------------------ verdicts

    def _commit(self, request: _Request, at: tuple[int, int]) -> None:
        request.state = "committed"
        for aggregate_id in request.aggregate_ids:
            head = self._heads.get(aggregate_id)
            if head is None:
                continue
            for i, (owner, state, version) in enumerate(head.versions):
                if owner is request:
                    head.versions[: i + 1] = [(None, state, version)]
                    break
        request.dependents.clear()
        if not request.future.done():
            request.future.set_result(at)

    def _fail(self, request: _Request, err: BaseException) -> None:
        if request.state != "queued":
            return
        request.state = "failed"
        for aggregate_id in request.aggregate_ids:
            head = self._heads.get(aggregate_id)
            if head is None:
                continue
            for i, (owner, _, _) in enumerate(head.versions):
                if owner is request:
                    del head.versions[i:]  # later ones built on it: they fail below
                    break
            if not head.versions or (not head.pending and head.versions[0][1] == _NOTHING):
                del self._heads[aggregate_id]
        if not request.future.done():
            request.future.set_exception(err)
            request.future.exception()  # retrieved: a caller that left must not warn
        for dependent in request.dependents:
            self._fail(dependent, DependencyFailedError("built on a command that failed"))
        request.dependents.clear()

    def _trim(self) -> None:
        excess = len(self._heads) - self._cache_size
        if excess <= 0:
            return
        for aggregate_id in [k for k, h in self._heads.items() if not h.pending][:excess]:
            del self._heads[aggregate_id]


def _dump(aggregate: Any) -> bytes:
    return pickle.dumps(aggregate, protocol=pickle.HIGHEST_PROTOCOL)


_SHARED: dict[tuple[str, int], LogWriter] = {}


def shared_writer(pool: asyncpg.Pool) -> LogWriter:
    """The writer every event store of this process (and event loop) uses for the database
    ``pool`` connects to: pools made from the same address share one."""
    try:
        loop: object = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    # asyncpg keeps the address a pool was made with; a pool without it shares with nobody.
    address = getattr(pool, "_connect_args", None)
    key = (repr(address) if address else f"pool-{id(pool)}", id(loop))
    for known in [k for k, w in _SHARED.items() if all(p.is_closing() for p in w._pools)]:
        del _SHARED[known]
    writer = _SHARED.get(key)
    if writer is None:
        writer = _SHARED[key] = LogWriter(pool)
    else:
        writer.attach(pool)
    return writer
