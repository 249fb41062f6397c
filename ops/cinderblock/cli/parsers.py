"""The ``cinderblock`` command line: every subcommand and option, and nothing heavier than
argparse behind them, so ``cinderblock --help`` answers at once. ``cli/main.py`` parses,
then imports only the module of the chosen command."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from cinderblock.cli.system import SERVICES
from cinderblock.readmodels.schema import PROJECTED_TABLES
from cinderblock.wire.microversion import MAX_VERSION


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and option of ``cinderblock`` (nothing heavy is imported here:
    ``--help`` and a mistyped option answer at once)."""
    parser = argparse.ArgumentParser(prog="cinderblock", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="run everything locally with embedded PostgreSQL and NATS")
    dev.add_argument("--data-dir", type=Path, default=None, help="default ./.cinderblock")
    dev.add_argument("--host", default=None, help="default 127.0.0.1")
    dev.add_argument("--port", type=int, default=None, help="default 8776")
    dev.add_argument(
        "--inject", default=None, help="driver faults, e.g. extend=fail or create=delay:0.5"
    )
    dev.add_argument(
        "--processes",
        action="store_true",
        help="run every service as its own process (uses every core, as production does)",
    )
    dev.add_argument(
        "--workers",
        type=int,
        default=None,
        help="API worker processes sharing the port (SO_REUSEPORT); default: one per CPU "
        "but one (at least one), with every consumer in its own process; --workers 1 "
        "without --processes runs everything in this one process",
    )
    serve = sub.add_parser(
        "serve", help="run one service against CINDERBLOCK_DATABASE_URL and CINDERBLOCK_NATS_URL"
    )
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--data-dir", type=Path, default=None, help="driver pools, image store")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="api only: worker processes sharing the port (SO_REUSEPORT)",
    )
    bench = sub.add_parser("bench", help="measure a running Cinderblock over HTTP")
    bench.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8776")
    bench.add_argument("--seconds", type=float, default=10.0)
    bench.add_argument("--out", type=Path, default=Path("ops/bench/results"))
    bench.add_argument(
        "--scenarios", default=None, help="comma-separated subset, e.g. extend_e2e,migrate_e2e"
    )
    bench.add_argument(
        "--lag",
        action="store_true",
        help="also sample consumer lag (the database and NATS of CINDERBLOCK_DATABASE_URL/"
        "CINDERBLOCK_NATS_URL, else of the `cinderblock dev` running under --data-dir)",
    )
    bench.add_argument("--data-dir", type=Path, default=None, help="default ./.cinderblock")
    bench.add_argument(
        "--burst",
        action="store_true",
        help="instead: the one-project burst (--workers create --volumes volumes, then extend,"
        " snapshot and retype each, all in one project); --url may list several APIs, "
        "comma-separated, used in turn",
    )
    bench.add_argument("--workers", type=int, default=16, help="--burst: concurrent clients")
    bench.add_argument("--volumes", type=int, default=48, help="--burst: volumes made")
    bench.add_argument(
        "--open-loop",
        default=None,
        metavar="RATES",
        help="instead: offer fixed rates of os-set_bootable (actions/s, comma-separated, "
        "e.g. 100,500,1000,2000) whatever the answers' speed; latency p50/p99 per rate",
    )
    bench.add_argument(
        "--plots",
        action="store_true",
        help="also write PNG plots beside the report (needs the `bench` extra: matplotlib)",
    )
    _audit_parsers(sub)
    _usage_parser(sub)
    _replay_parsers(sub)
    return parser


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """The shared ``--data-dir`` option of tooling commands."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the embedded PostgreSQL of this data dir, used when CINDERBLOCK_DATABASE_URL "
        "is unset (default ./.cinderblock, as `cinderblock dev`; a running dev is reused)",
    )


def timestamp(text: str) -> datetime:
    """ISO 8601; without a zone it is UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from err
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def volume_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a volume id: {text!r}") from err


def _audit_parsers(sub: Any) -> None:
    """history, state, audit (``cli/audit.py``)."""
    history = sub.add_parser("history", help="a volume's events, with what each changed")
    history.add_argument("volume_id", type=volume_id)
    history.add_argument("--json", action="store_true", help="JSON lines for tools")
    add_data_dir_argument(history)
    state = sub.add_parser("state", help="a volume as it was, rebuilt from its events")
    state.add_argument("volume_id", type=volume_id)
    when = state.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", type=timestamp, help="ISO 8601 time (UTC without a zone)")
    when.add_argument("--version", type=int, help="the volume's version (event count)")
    state.add_argument("--microversion", default=str(MAX_VERSION), help="view as of 3.x")
    state.add_argument("--base-url", default=None, help="for links; default host:port")
    add_data_dir_argument(state)
    audit = sub.add_parser("audit", help="CADF records of API actions, one per request")
    audit.add_argument("--since", type=timestamp, required=True)
    audit.add_argument("--until", type=timestamp, default=None)
    audit.add_argument("--project", default=None, help="requests made by this project")
    audit.add_argument("--format", choices=("cadf", "jsonl"), default="cadf")
    add_data_dir_argument(audit)


def _usage_parser(sub: Any) -> None:
    """usage (``cli/usage.py``)."""
    parser = sub.add_parser("usage", help="billed GiB·hours per volume and type over a window")
    parser.add_argument("--project", default=None, help="one project (default: every project)")
    parser.add_argument(
        "--since",
        default=None,
        help="ISO 8601, UTC without a zone (default: the first of the month)",
    )
    parser.add_argument("--until", default=None, help="ISO 8601, exclusive (default: now)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    add_data_dir_argument(parser)


WORKERS_HELP = "processes folding the bulk of the log (default: 1 below 150,000 events, else 2+)"

# The billing consumer's usage ledger is derived from the log too: ``replay`` rebuilds it
# with the same fold the consumer uses, in the same pass as the read models.
LEDGER = "billing"
EVERYTHING = (*PROJECTED_TABLES, LEDGER)


def projections(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if names == ("all",):
        return EVERYTHING
    unknown = [n for n in names if n not in EVERYTHING]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown projection {unknown or text!r}; choose all or {', '.join(EVERYTHING)}"
        )
    return names


def selected_tables(names: tuple[str, ...]) -> tuple[str, ...]:
    """The read-model tables among ``--projection`` (the ledger is not one)."""
    return tuple(n for n in names if n != LEDGER)


def _replay_parsers(sub: Any) -> None:
    """replay, verify, bench-log (``cli/replay.py``)."""
    rp = sub.add_parser(
        "replay", help="rebuild read models from the event log and swap them in atomically"
    )
    rp.add_argument(
        "--projection",
        type=projections,
        default=EVERYTHING,
        help=f"all (default) or a comma-separated subset of {', '.join(EVERYTHING)}",
    )
    rp.add_argument("--json", action="store_true", help="the summary as JSON on stdout")
    rp.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    rp.add_argument(
        "--max-new-quarantined",
        type=int,
        default=100,
        help="swap nothing if the rebuild quarantines more aggregates the live projector "
        "applied than this (broken code, more likely than bad events; default 100)",
    )
    add_data_dir_argument(rp)
    vf = sub.add_parser(
        "verify", help="rebuild into side tables and diff them against the live read models"
    )
    vf.add_argument("--projection", type=projections, default=PROJECTED_TABLES)
    vf.add_argument("--json", action="store_true", help="summary and differences as JSON")
    vf.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    add_data_dir_argument(vf)
    bl = sub.add_parser("bench-log", help="append a realistic generated event log (benchmarks)")
    bl.add_argument("--events", type=int, required=True)
    bl.add_argument("--seed", type=int, default=0)
    bl.add_argument(
        "--append", action="store_true", help="allow a database that already holds events"
    )
    add_data_dir_argument(bl)
