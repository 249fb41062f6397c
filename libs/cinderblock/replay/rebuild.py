"""Rebuild read models from position 0 into a side schema, catch them up to the live
projector, then swap them in (``replay``) or compare them (``verify``).

How it stays correct while the API serves and the projector runs is in this package's
README. In short: the side tables are built outside any lock; the catch-up to the live
projector's position and the swap happen in one transaction that holds the projector's
tracking row (``FOR UPDATE``, which every projector batch takes first), so no batch can
commit in between; readers see the old tables or the new ones, never a half-built one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from cinderblock.readmodels.rowstore import Folder
from cinderblock.readmodels.schema import PROJECTED_CHANNEL, READMODELS_DDL
from cinderblock.readmodels.tables import PROJECTED_TABLES, q
from cinderblock.replay import ledger
from cinderblock.replay.decode import Decoder
from cinderblock.replay.folding import (
    KEEP_ROWS,
    PAGE_SIZE,
    fewer_collections,
    new_folder,
    redecided,
    wanted_events,
)
from cinderblock.replay.ledger import VOLUME_TOPICS, WRITE_EVERY, LedgerFold, LedgerReport
from cinderblock.replay.parallel import default_workers, fold_in_parallel
from cinderblock.replay.session import (
    PROJECTOR,
    connections,
    projector_paused,
)
from cinderblock.replay.source import event_count, pages, settled_end
from cinderblock.store.eventstore import START, Position
from cinderblock.store.schema import EVENTS_DDL
from cinderblock.usage.schema import USAGE_DDL

Progress = Callable[[int, int], None]  # (events folded, events expected)


@dataclass
class Rebuilt:
    schema: str
    tables: tuple[str, ...]
    events: int = 0  # events read from the log
    position: Position = START  # the side tables reflect every event up to here
    seconds: float = 0.0
    live_position: Position = START
    swapped: bool = False
    workers: int = 1  # processes that folded the bulk of the log
    worker_peak_rss_mib: float = 0.0  # the largest worker's, when workers > 1
    quarantined: int = 0  # aggregates the rebuild set aside (an event it could not apply)
    ledger: LedgerReport | None = None  # the usage ledger, when it was rebuilt too
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step of ``replay``

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def _side_schema() -> str:
    return f"rebuild_{time.time_ns() // 1_000_000}"


async def _tracked(conn: asyncpg.Connection, *, lock: bool = False) -> Position:
    sql = "SELECT tx_id, position FROM tracking WHERE name = $1" + (" FOR UPDATE" if lock else "")
    row = await conn.fetchrow(sql, PROJECTOR)
    return Position(row["tx_id"], row["position"]) if row else START


class Rebuild:
    """One rebuild into a fresh side schema on ``conn`` (events are read on ``reader``)."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        reader: asyncpg.Connection,
        tables: Sequence[str] = PROJECTED_TABLES,
        *,
        progress: Progress | None = None,
        dsn: str | None = None,
        workers: int | None = None,
        ledger: str | None = None,
    ) -> None:
        """``workers``: processes for the bulk of the log (None: by its length; needs
        ``dsn``). ``ledger``: also rebuild the usage ledger, in the same pass (the billing
        consumer's name: its quarantine is the one the ledger keeps)."""
        unknown = set(tables) - set(PROJECTED_TABLES)
        if unknown:
            raise ValueError(f"unknown projection(s) {sorted(unknown)}; known: {PROJECTED_TABLES}")
        self.conn = conn
        self.reader = reader
        self.dsn = dsn
        self.workers = workers
        self.result = Rebuilt(schema=_side_schema(), tables=tuple(tables))
        self.progress = progress
        self.decode = Decoder(wanted=wanted_events(tables))
        self.folder: Folder | None = None
        self.horizon = START  # the last row of the page being folded
        self._expected = 0
        self._committed = (START, 0)
        self.ledger_consumer = ledger
        self.ledger: LedgerFold | None = None  # folding along the pages (one process)
        self.ledger_decode = Decoder(wanted=())  # the ledger's refolds: domain events only
        self.ledger_position = START  # the side ledger reflects every volume event to here
        self.ledger_events = 0

    async def new_folder(self, *, fresh: bool = False) -> Folder:
        result = self.result
        return await new_folder(
            self.conn,
            result.schema,
            result.tables,
            self.decode,
            lambda: self.horizon,
            fresh=fresh,
            keep=KEEP_ROWS,  # read at the call: a test makes it small
        )

    async def prepare(self) -> None:
        """Create the side schema with the read models' own DDL (same tables, indexes)."""
        conn, side = self.conn, self.result.schema
        await conn.execute("SELECT pg_advisory_lock(hashtext('cinderblock-schema'))")
        try:
            await conn.execute(EVENTS_DDL)
            await conn.execute(READMODELS_DDL)
            if self.ledger_consumer is not None:
                await conn.execute(USAGE_DDL)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext('cinderblock-schema'))")
        await conn.execute(f"CREATE SCHEMA {q(side)}")
        await conn.execute(f"SET search_path TO {q(side)}, public")
        try:
            await conn.execute(READMODELS_DDL)
        finally:
            await conn.execute("RESET search_path")
        await conn.execute(
            "INSERT INTO tracking (name, tx_id, position) VALUES ($1, 0, 0) "
            "ON CONFLICT (name) DO NOTHING",
            PROJECTOR,
        )
        if self.ledger_consumer is not None:
            await ledger.prepare(conn, side)
            self.ledger = LedgerFold(conn, side, self.ledger_consumer)
        self.folder = await self.new_folder(fresh=True)

    async def fold(self, upto: Position | None) -> None:
        """Fold every settled event after the current position up to ``upto`` (None: the
        settled end of the log) into the side tables, and write them."""
        assert self.folder is not None
        result, decode, folder = self.result, self.decode, self.folder
        self._expected = result.events + await event_count(self.reader, result.position, upto)
        started = time.perf_counter()
        async for page in pages(self.reader, result.position, upto, size=PAGE_SIZE):
            last = page[-1]
            self.horizon = Position(last[0], last[1])
            if self.ledger is None:
                events, undecodable = decode.rows(page, PROJECTOR)
            else:
                events, undecodable, volume_events = decode.with_domain(
                    page, PROJECTOR, VOLUME_TOPICS
                )
                self.ledger.fold(volume_events)
                await self.ledger.write(every=WRITE_EVERY)
                self.ledger_position = self.horizon
            folder.set_aside(undecodable)
            await folder.fold(events)
            result.position = self.horizon
            result.events += len(page)
            if self.progress:
                self.progress(result.events, max(self._expected, result.events))
        await folder.flush()
        result.seconds += time.perf_counter() - started

    async def fold_bulk(self, *, own_log: bool) -> None:
        """The log up to now (``own_log``) or up to the projector's position, folded by
        several processes when it is long."""
        if self.dsn is None or self.workers == 1 or self.result.events:
            return
        upto = await (settled_end(self.reader) if own_log else _tracked(self.conn))
        expected = await event_count(self.reader, START, upto)
        workers = self.workers or default_workers(expected)
        if workers < 2:
            return
        result = self.result
        started = time.perf_counter()

        def progress(done: int) -> None:
            if self.progress:
                self.progress(done, max(expected, done))

        folded = await fold_in_parallel(
            self.dsn, result.schema, result.tables, upto, workers, progress, self.ledger_consumer
        )
        result.seconds += time.perf_counter() - started
        result.events, result.position = folded.events, upto
        result.workers, result.worker_peak_rss_mib = workers, folded.worker_peak_rss_mib
        self.horizon = upto
        self.folder = await self.new_folder()
        if self.ledger is not None:  # the workers folded it; the rest is refolded
            self.ledger = None
            self.ledger_position, self.ledger_events = upto, folded.ledger_events

    async def catch_up_unlocked(self, *, own_log: bool) -> None:
        """Build up to the live projector's position (``own_log``: nobody projects, so up
        to the end of the log), following it while it moves."""
        phases, started = self.result.phases, time.perf_counter()
        await self.fold_bulk(own_log=own_log)
        bulk = time.perf_counter()
        for _ in range(20):
            target = None if own_log else await _tracked(self.conn)
            before = self.result.events
            await self.fold(target)
            if self.result.events - before < PAGE_SIZE:
                break
        caught_up = time.perf_counter()
        await self.ledger_catch_up()
        phases["fold_bulk"] = round(bulk - started, 3)
        phases["fold_rest"] = round(caught_up - bulk, 3)
        phases["ledger_catch_up"] = round(time.perf_counter() - caught_up, 3)

    async def ledger_catch_up(self) -> None:
        """The ledger's rows up to the settled end of the log, outside any lock: the fold
        along the pages written out, then the volumes with later events refolded."""
        if self.ledger_consumer is None:
            return
        if self.ledger is not None:
            await self.ledger.finish(self.ledger_decode, self.ledger_position)
            self.ledger_events += self.ledger.events
            self.ledger = None
        end = await settled_end(self.reader)
        if end > self.ledger_position:
            self.ledger_events += await ledger.catch_up(
                self.conn,
                self.result.schema,
                self.ledger_consumer,
                self.ledger_decode,
                self.ledger_position,
                end,
            )
            self.ledger_position = end

    async def swap_ledger(self) -> None:
        """Refold the last volumes under the ledger's lock and swap the ledger in."""
        assert self.ledger_consumer is not None
        self.result.ledger = await ledger.swap(
            self.conn,
            self.result.schema,
            self.ledger_consumer,
            self.ledger_decode,
            self.ledger_position,
            self.ledger_events,
        )

    async def lock_and_catch_up(self, *, own_log: bool) -> Position:
        """Inside a transaction: hold the tracking row (the projector waits at its next
        batch) and fold the last events up to its position. Returns the position the side
        tables now reflect (ahead of the tracking row only when ``own_log``)."""
        self._committed = (self.result.position, self.result.events)
        live = await _tracked(self.conn, lock=True)
        self.result.live_position = live
        if live > self.result.position:
            await self.fold(live)
        elif self.result.position > live and not own_log:
            raise RuntimeError(
                f"side tables at {self.result.position} are ahead of the projector at {live}"
            )
        return max(live, self.result.position)

    async def swap(self, reflected: Position) -> None:
        """Inside the same transaction: move the live tables out and the side tables in,
        then the tracking row to ``reflected``."""
        conn, side = self.conn, self.result.schema
        retired = f"{side}_old"
        await conn.execute(f"CREATE SCHEMA {q(retired)}")
        live = ", ".join(f"public.{q(t)}" for t in self.result.tables)
        await conn.execute(f"LOCK TABLE {live} IN ACCESS EXCLUSIVE MODE")
        for table in self.result.tables:
            await conn.execute(f"ALTER TABLE public.{q(table)} SET SCHEMA {q(retired)}")
            await conn.execute(f"ALTER TABLE {q(side)}.{q(table)} SET SCHEMA public")
        await conn.execute(
            "UPDATE tracking SET tx_id = $2, position = $3, updated_at = now() WHERE name = $1",
            PROJECTOR,
            reflected.tx_id,
            reflected.position,
        )
        await self.swap_quarantine()
        await conn.execute(
            "SELECT pg_notify($1, $2)", PROJECTED_CHANNEL, f"{reflected.tx_id}:{reflected.position}"
        )
        self.result.swapped = True

    async def count_quarantined(self) -> int:
        side = q(self.result.schema)
        found: int = await self.conn.fetchval(
            f"SELECT count(*) FROM {side}.quarantine WHERE NOT held"
        )
        self.result.quarantined = found
        return found

    async def newly_quarantined(self) -> int:
        """Aggregates the rebuild quarantined that the live projector has not."""
        found: int = await self.conn.fetchval(
            f"""
            SELECT count(*) FROM {q(self.result.schema)}.quarantine s
            WHERE NOT s.held AND NOT EXISTS (SELECT 1 FROM public.quarantine p
                WHERE p.consumer = s.consumer AND p.aggregate_id = s.aggregate_id)
            """
        )
        return found

    async def swap_quarantine(self) -> None:
        """Inside the swap: the projector's quarantine becomes what this rebuild found, for
        every aggregate it decided anew (those it reproduced keep their first record);
        the quarantine of aggregates it kept stays."""
        conn, side = self.conn, q(self.result.schema)
        live = await conn.fetch(
            "SELECT aggregate_id, event_name FROM quarantine WHERE consumer = $1 AND NOT held",
            PROJECTOR,
        )
        redo = [r["aggregate_id"] for r in live if redecided(r["event_name"], self.result.tables)]
        await conn.execute(
            f"""
            DELETE FROM public.quarantine p
            WHERE p.consumer = $1 AND p.aggregate_id = ANY($2::uuid[])
              AND NOT EXISTS (SELECT 1 FROM {side}.quarantine s WHERE s.consumer = p.consumer
                  AND s.aggregate_id = p.aggregate_id AND s.version = p.version
                  AND s.held = p.held)
            """,
            PROJECTOR,
            redo,
        )
        await conn.execute(
            f"INSERT INTO public.quarantine SELECT * FROM {side}.quarantine ON CONFLICT DO NOTHING"
        )
        await self.count_quarantined()

    async def drop(self) -> None:
        side = self.result.schema
        for schema in (side, f"{side}_old"):
            await self.conn.execute(f"DROP SCHEMA IF EXISTS {q(schema)} CASCADE")


class TooManyQuarantinedError(RuntimeError):
    """Raised by ``replay`` (nothing swapped) when the rebuild quarantined more aggregates
    the live projector applied than ``max_new_quarantined``: broken code, more likely than
    that many bad events, and swapping it in would hide their rows."""


async def replay(
    dsn: str,
    tables: Sequence[str] = PROJECTED_TABLES,
    *,
    progress: Progress | None = None,
    lock_timeout: str = "5s",
    workers: int | None = None,
    max_new_quarantined: int = 100,
    ledger: str | None = None,
) -> Rebuilt:
    """Rebuild ``tables`` from position 0 and swap them in atomically (unless it would
    quarantine more than ``max_new_quarantined`` aggregates the live projector applied);
    ``ledger``: the usage ledger too, in the same pass over the log (the billing consumer's
    name), swapped in after the tables. ``phases`` of the result: seconds per step."""
    phases: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = round(phases.get(name, 0.0) + now - mark, 3)
        mark = now

    async with (
        connections(dsn, exclusive=True) as (conn, reader),
        projector_paused(conn, take=bool(tables)) as own,
    ):
        rebuild = Rebuild(
            conn, reader, tables, progress=progress, dsn=dsn, workers=workers, ledger=ledger
        )
        # Only a rebuild of every table may move the tracking row past the live position;
        # the ledger alone follows the log, not the projector.
        own_log = not tables or (own and set(tables) == set(PROJECTED_TABLES))
        with fewer_collections():
            try:
                await rebuild.prepare()
                lap("prepare")
                await rebuild.catch_up_unlocked(own_log=own_log)
                lap("fold")
                for attempt in range(5 if tables else 0):
                    try:
                        async with conn.transaction():
                            await conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
                            reflected = await rebuild.lock_and_catch_up(own_log=own_log)
                            new = await rebuild.newly_quarantined()
                            if new > max_new_quarantined:
                                raise TooManyQuarantinedError(
                                    f"the rebuild quarantined {new} aggregates the live projector "
                                    f"applied (more than {max_new_quarantined}): nothing swapped"
                                )
                            await rebuild.swap(reflected)
                        break
                    except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
                        if attempt == 4:
                            raise
                        await _reset_after_abort(rebuild)
                lap("swap")
                if ledger is not None:
                    await rebuild.swap_ledger()
                    lap("ledger_swap")
            finally:
                await rebuild.drop()
                lap("drop")
        rebuild.result.phases.update(phases)
        return rebuild.result


async def _reset_after_abort(rebuild: Rebuild) -> None:
    """The locked transaction rolled back: the side tables hold what was committed before
    it, so forget the cached rows and go back to that position."""
    result = rebuild.result
    result.position, result.events = rebuild._committed
    rebuild.horizon = result.position
    rebuild.folder = await rebuild.new_folder()
