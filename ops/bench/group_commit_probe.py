"""Group commit as PostgreSQL sees it, while a load runs: how many events each appending
transaction carried, how many commands that was, and how many WAL flushes (fsyncs) per
second the database made.

    python ops/bench/group_commit_probe.py --data-dir /tmp/cb --seconds 10 &
    cinderblock bench --url http://127.0.0.1:8776 --scenarios set_bootable --seconds 8

``--dsn`` instead of ``--data-dir`` for a PostgreSQL of your own. Every second it prints a
line; at the end a summary (JSON with ``--json``). The figures come from the event log
itself (rows per ``tx_id``, distinct request ids per ``tx_id``) and from
``pg_stat_wal``/``pg_stat_database``, so they hold for every API process writing the
database, whatever their number. The writer's own view (queue wait, statement time) is its
"group commit" log line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

# WAL writes and flushes: pg_stat_io from PostgreSQL 18 on (the embedded server), before
# that pg_stat_wal's own counters.
_WAL_IO = """
SELECT coalesce(sum(fsyncs), 0) AS wal_sync, coalesce(sum(writes), 0) AS wal_write
FROM pg_stat_io WHERE object = 'wal'
"""
_WAL_OLD = "SELECT wal_sync, wal_write FROM pg_stat_wal"
_COMMITS = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
_NEWEST = "SELECT coalesce(max(position), 0) FROM events"
# One row per appending transaction after a position: its rows and its commands (a command
# is one request id in the events' meta; rows without one count as one command each).
_APPENDS = """
SELECT tx_id, count(*) AS rows,
       count(DISTINCT coalesce(meta->>'request_id', position::text)) AS commands
FROM events WHERE position > $1 AND position <= $2 GROUP BY tx_id
"""


async def _sample(conn: asyncpg.Connection) -> dict[str, int]:
    newer = conn.get_server_version().major >= 18
    wal = await conn.fetchrow(_WAL_IO if newer else _WAL_OLD)
    # pg_stat_* are snapshots per transaction: clear so the next read is fresh.
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return {
        "wal_sync": int(wal["wal_sync"]),
        "wal_write": int(wal["wal_write"]),
        "commits": int(await conn.fetchval(_COMMITS)),
        "position": int(await conn.fetchval(_NEWEST)),
    }


def _percentile(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarise(
    appends: list[tuple[int, int]], wal: dict[str, int], seconds: float
) -> dict[str, Any]:
    """``appends``: (rows, commands) of every appending transaction in the window;
    ``wal``: the counters' growth over it."""
    commands = [c for _, c in appends]
    rows = sum(r for r, _ in appends)
    per = max(len(appends), 1)
    return {
        "seconds": round(seconds, 2),
        "append_transactions": len(appends),
        "append_transactions_per_s": round(len(appends) / seconds, 1),
        "commands": sum(commands),
        "rows": rows,
        "commands_per_append": round(sum(commands) / per, 2),
        "commands_per_append_p50": _percentile(commands, 0.5),
        "commands_per_append_p99": _percentile(commands, 0.99),
        "commands_per_append_max": max(commands, default=0),
        "rows_per_append": round(rows / per, 2),
        "wal_syncs_per_s": round(wal["wal_sync"] / seconds, 1),
        "wal_writes_per_s": round(wal["wal_write"] / seconds, 1),
        "commits_per_s": round(wal["commits"] / seconds, 1),
    }


async def probe(dsn: str, seconds: float, *, quiet: bool) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        first = await _sample(conn)
        began = last_t = time.monotonic()
        last = first
        while (now := time.monotonic()) - began < seconds:
            await asyncio.sleep(min(1.0, seconds - (now - began)))
            current, t = await _sample(conn), time.monotonic()
            if not quiet:
                rate = {k: (current[k] - last[k]) / (t - last_t) for k in current}
                print(
                    f"{t - began:5.1f} s  events {rate['position']:8.0f}/s"
                    f"  commits {rate['commits']:7.0f}/s  wal syncs {rate['wal_sync']:6.0f}/s",
                    file=sys.stderr,
                    flush=True,
                )
            last, last_t = current, t
        rows = await conn.fetch(_APPENDS, first["position"], last["position"])
        appends = [(int(r["rows"]), int(r["commands"])) for r in rows]
        growth = {k: last[k] - first[k] for k in ("wal_sync", "wal_write", "commits")}
        return summarise(appends, growth, last_t - began)
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--dsn", help="the event store's PostgreSQL")
    where.add_argument("--data-dir", type=Path, help="of a running `cinderblock dev`")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="the summary as JSON")
    args = parser.parse_args()
    dsn = args.dsn
    if dsn is None:
        from cinderblock.cli.target import running_dsn

        dsn = running_dsn(args.data_dir)
        if dsn is None:
            print(f"no cinderblock dev is running under {args.data_dir}", file=sys.stderr)
            return 2
    figures = asyncio.run(probe(dsn, args.seconds, quiet=args.json))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
