"""Replay benchmark: rebuild rate and peak memory of `cinderblock replay` on a generated log.

    CINDERBLOCK_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        python ops/bench/replay_bench.py --events 1000000 --out ops/bench/results

Creates a scratch database on that server, fills it with `cinderblock bench-log`, vacuums
the log (or, with --database, uses a database that already holds a log), then runs
`cinderblock replay` (every projection: the read models and the usage ledger) with the
default (automatic) number of processes and with one (--rounds times each, alternating),
and `cinderblock verify`, each as its own process, measured from outside (wall time, the
command's own JSON summary: the whole command's rate, the fold-only rate, the phases, peak
RSS; the machine's load). Writes `replay-<UTC>.json` and `.md` to --out and drops the
scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

CLI = [sys.executable, "-m", "cinderblock.cli.main"]


def _with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def _run(dsn: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "CINDERBLOCK_DATABASE_URL": dsn, "CINDERBLOCK_LOG_LEVEL": "WARNING"}
    load_before = os.getloadavg()
    started = time.perf_counter()
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{args} failed ({done.returncode}): {done.stderr[-2000:]}")
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "{}"
    summary = json.loads(last) if last.startswith("{") else {"output": last}
    return {
        "command": " ".join(["cinderblock", *args]),
        "exit": done.returncode,
        "wall_s": round(wall, 2),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "summary": summary,
    }


def _machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kib = 0
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def _vacuum(dsn: str) -> float:
    """A log that has been around: hint bits set, visibility map and statistics current
    (the first scan of freshly written rows otherwise pays for setting the hint bits)."""
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) events")
        return round(time.perf_counter() - started, 2)
    finally:
        await conn.close()


async def _database(dsn: str, name: str, *, drop: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if drop:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Replay benchmark {report['when']} (commit `{report['commit']}`)",
        "",
        f"Machine: {report['machine']}",
        (
            f"Log: {report['events']:,} events generated in {report['generate']['wall_s']} s, "
            f"then VACUUM (ANALYZE) events in {report['generate']['vacuum_s']} s"
            if report["generate"]
            else f"Log: {report['events']:,} events in an existing database"
        ),
        "",
        "events/s and s: the whole command (start-up, every projection including the usage "
        "ledger, swaps), as the command reports it; fold: the fold alone; wall: measured "
        "from outside.",
        "",
        "| run | processes | events/s | s | fold events/s | fold s | wall s | peak RSS MiB "
        "(main / largest worker) | ledger volumes / intervals | phases s | load before → after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    for run in report["runs"]:
        s = run["summary"]
        ledger = s.get("ledger") or {}
        phases = ", ".join(f"{k} {v}" for k, v in (s.get("phases") or {}).items())
        lines.append(
            f"| `{run['command']}` | {s.get('workers', '')} | {s.get('events_per_second', '')} "
            f"| {s.get('seconds', '')} | {s.get('fold_events_per_second', '')} "
            f"| {s.get('fold_seconds', '')} | {run['wall_s']} | {s.get('peak_rss_mib', '')} / "
            f"{s.get('worker_peak_rss_mib', '')} | {ledger.get('volumes', '')} / "
            f"{ledger.get('intervals', '')} | {phases} | {run['load_before'][0]} → "
            f"{run['load_after'][0]} |"
        )
    v = report["verify"]
    lines += [
        "",
        f"Verify: exit {v['exit']}, {v['wall_s']} s, identical: {v['summary'].get('identical')}",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("ops/bench/results"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--rounds", type=int, default=2, help="replays per configuration")
    parser.add_argument(
        "--database",
        help="an existing database holding a log (--events: how many it holds); kept",
    )
    args = parser.parse_args()
    server = os.environ["CINDERBLOCK_DATABASE_URL"]
    name = args.database or f"cb_replay_bench_{uuid.uuid4().hex[:8]}"
    if not args.database:
        asyncio.run(_database(server, name, drop=False))
    dsn = _with_db(server, name)
    generate: dict[str, Any] = {}
    try:
        if not args.database:
            generate = _run(dsn, "bench-log", "--events", str(args.events), "--live")
            generate["vacuum_s"] = asyncio.run(_vacuum(dsn))
        runs = []
        for _ in range(args.rounds):
            runs.append(_run(dsn, "replay", "--json"))
            runs.append(_run(dsn, "replay", "--json", "--workers", "1"))
        verified = _run(dsn, "verify", "--json")
        verified["summary"].pop("differences", None)
    finally:
        if not args.keep and not args.database:
            asyncio.run(_database(server, name, drop=True))
    when = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = {
        "when": when,
        "commit": _commit(),
        "machine": _machine(),
        "events": args.events,
        "generate": generate,
        "runs": runs,
        "verify": verified,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"replay-{when}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"replay-{when}.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
