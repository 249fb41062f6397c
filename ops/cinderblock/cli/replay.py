"""`cinderblock replay`, `cinderblock verify` and `cinderblock bench-log`: rebuild the read
models from the event log and swap them in, compare a rebuild with the live read models,
and generate a realistic event log to try both on. They work on the database
`cinderblock.cli.target` picks (CINDERBLOCK_DATABASE_URL, else --data-dir, also while
`cinderblock dev` runs there)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time

import asyncpg

from cinderblock.cli.parsers import LEDGER, selected_tables
from cinderblock.cli.progress import Bar
from cinderblock.cli.target import database, ensure_database
from cinderblock.config.settings import Settings
from cinderblock.replay.rebuild import TooManyQuarantinedError, replay
from cinderblock.replay.session import ReplayBusyError
from cinderblock.replay.verify import IGNORED_COLUMNS, verify
from cinderblock.runtime.infra import create_schemas
from cinderblock.usage.consumer import billing_durable

COMMANDS = ("replay", "verify", "bench-log")


def peak_rss_mib() -> float:
    """This process's resident set high-water mark (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# A process that had run this long before the command began is not the command's own
# (a test, a program calling ``main``): the command's time is then counted from ``main``.
_OWN_PROCESS_WITHIN_S = 10.0
_started: float | None = None  # time.monotonic() when the command began


def _process_age() -> float | None:
    """Seconds since this process started (Linux: /proc/self/stat, 10 ms ticks)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def command_seconds() -> float:
    """Wall seconds of this command so far: from the process's start (interpreter start-up
    and imports included) when the process is the command, else from ``main``."""
    assert _started is not None
    return time.monotonic() - _started


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Run the command on uvloop where available (asyncpg parses pages faster there)."""
    global _started
    age = _process_age()
    own = age is not None and age < _OWN_PROCESS_WITHIN_S
    _started = time.monotonic() - (age if own and age is not None else 0.0)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(args, settings))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run(args, settings))


async def _schemas(dsn: str) -> None:
    """The log's database may hold nothing but events (``bench-log`` into a new database,
    a restored dump): the read models, ledger and quarantine tables are made first, as
    every service does at start."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        await create_schemas(pool)
    finally:
        await pool.close()


async def run(args: argparse.Namespace, settings: Settings) -> int:
    async with database(settings) as dsn:
        if args.command in ("replay", "verify"):
            await _schemas(dsn)
        try:
            if args.command == "replay":
                return await _replay(dsn, args, settings)
            if args.command == "verify":
                return await _verify(dsn, args)
        except (ReplayBusyError, TooManyQuarantinedError) as err:
            print(f"cinderblock: {err}", file=sys.stderr)
            return 2
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as err:
            print(
                f"cinderblock: {args.command}: the read models stayed locked by others ({err}); "
                "nothing was swapped or compared, try again",
                file=sys.stderr,
            )
            return 2
        return await _bench_log(dsn, args)


async def _replay(dsn: str, args: argparse.Namespace, settings: Settings) -> int:
    tables = selected_tables(args.projection)
    consumer = billing_durable(settings) if LEDGER in args.projection else None
    start_up = command_seconds()
    bar = Bar("replay")
    try:
        done = await replay(
            dsn,
            tables,
            progress=bar,
            workers=args.workers,
            max_new_quarantined=args.max_new_quarantined,
            ledger=consumer,
        )
    finally:
        bar.close()
    wall = command_seconds()
    ledger = done.ledger
    summary = {
        "events": done.events,
        # The whole command: start-up, every projection (the usage ledger too), the swaps.
        "seconds": round(wall, 3),
        "events_per_second": round(done.events / wall) if wall > 0 else 0,
        # Folding the log alone (the bulk and the catch-up; start-up and swaps left out).
        "fold_seconds": round(done.seconds, 3),
        "fold_events_per_second": round(done.rate),
        "phases": {"start_up": round(start_up, 3), **done.phases},
        "tables": list(done.tables),
        "position": str(done.position),
        "projector_position_at_swap": str(done.live_position),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "workers": done.workers,
        "worker_peak_rss_mib": round(done.worker_peak_rss_mib, 1),
        "ledger": vars(ledger) if ledger else None,
        "quarantined": done.quarantined,
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    if ledger:
        print(
            f"rebuilt the usage ledger from {ledger.events:,} volume events: "
            f"{ledger.volumes:,} volumes, {ledger.intervals:,} intervals"
            + (f", {ledger.quarantined:,} quarantined" if ledger.quarantined else "")
        )
    what = [*done.tables, *(["the usage ledger"] if ledger else [])]
    print(
        f"replayed {done.events:,} events: whole command {wall:.2f}s, "
        f"{summary['events_per_second']:,} events/s (start-up, "
        f"{'every projection' if ledger and tables else 'the projections'}, swap); "
        f"folding {done.seconds:.2f}s, {done.rate:,.0f} events/s with {done.workers} "
        f"process(es); swapped in {', '.join(what)}"
        + (f" at {done.position}" if tables else "")
        + f"; peak RSS {summary['peak_rss_mib']} MiB"
        + (f" (largest worker {summary['worker_peak_rss_mib']} MiB)" if done.workers > 1 else "")
    )
    if done.quarantined:
        print(
            f"{done.quarantined} aggregate(s) quarantined: an event could not be applied "
            "(cinderblock verify lists them)"
        )
    return 0


async def _verify(dsn: str, args: argparse.Namespace) -> int:
    tables = selected_tables(args.projection)
    if not tables:
        print(
            "cinderblock: verify compares read models; the usage ledger is rebuilt by "
            "`cinderblock replay --projection billing`",
            file=sys.stderr,
        )
        return 2
    bar = Bar("verify")
    try:
        result = await verify(dsn, tables, progress=bar, workers=args.workers)
    finally:
        bar.close()
    if args.json:
        print(
            json.dumps(
                {
                    "identical": result.identical,
                    "events": result.rebuilt.events,
                    "position": str(result.rebuilt.position),
                    "rows": result.rows,
                    "ignored_columns": sorted(IGNORED_COLUMNS),
                    "differences": [vars(d) for d in result.differences],
                    "quarantined": [
                        {**vars(e), "replay_would": result.replay_would(e)}
                        for e in result.quarantined
                    ],
                    "replay_would_quarantine": [vars(e) for e in result.new_in_rebuild()],
                },
                default=str,
            )
        )
    else:
        for difference in result.differences:
            print(difference)
        for entry in result.quarantined:
            would = result.replay_would(entry)
            print(f"{entry}" + (f"; a replay would {would}" if would else ""))
        for entry in result.new_in_rebuild():
            print(f"a replay would quarantine: {entry}")
        rows = ", ".join(f"{t} {n:,}" for t, n in result.rows.items())
        verdict = "identical" if result.identical else f"{len(result.differences)} difference(s)"
        if result.quarantined:
            verdict += f", {len(result.quarantined)} quarantined aggregate(s)"
        print(
            f"verify: {verdict} after {result.rebuilt.events:,} events up to "
            f"{result.rebuilt.position} ({rows} rows compared)"
        )
    return 0 if result.identical else 1


async def _bench_log(dsn: str, args: argparse.Namespace) -> int:
    """Into ``--database`` on the target's server (a database of its own, so a benchmark
    never lands in a live log), or with ``--live`` into the target database itself."""
    from cinderblock.cli.eventlog import generate
    from cinderblock.config.settings import mask_url

    if not args.live:
        dsn = await ensure_database(dsn, args.database)
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('events') IS NOT NULL")
        held = exists and await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events)")
    finally:
        await conn.close()
    if held and not (args.append or args.live):
        print(
            f"cinderblock: database {args.database} already holds events; pass --append to "
            "add generated ones to them, or --database NAME for another",
            file=sys.stderr,
        )
        return 2
    bar = Bar("bench-log")
    try:
        count, seconds = await generate(dsn, args.events, seed=args.seed, progress=bar)
    except asyncpg.UniqueViolationError:
        print(
            f"cinderblock: the log already holds the volumes of --seed {args.seed} (a seed "
            "always makes the same ones); pass another --seed to add more",
            file=sys.stderr,
        )
        return 2
    finally:
        bar.close()
    print(f"generated {count:,} events in {seconds:.1f}s ({count / seconds:,.0f} events/s)")
    if not args.live:
        print(
            f"into database {args.database}; replay it with "
            f"CINDERBLOCK_DATABASE_URL={mask_url(dsn)} cinderblock replay"
        )
    return 0
