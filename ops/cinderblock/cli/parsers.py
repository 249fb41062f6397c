"""The ``cinderblock`` command line: every subcommand and option, and nothing heavier than
argparse behind them, so ``cinderblock --help`` answers at once. ``cli/main.py`` parses,
then imports only the module of the chosen command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from cinderblock.cli.system import SERVICES
from cinderblock.readmodels.schema import PROJECTED_TABLES
from cinderblock.wire.microversion import MAX_VERSION, MIN_VERSION, APIVersion

VOLUME = "6d1f0c8e-5b0a-4c55-9d43-1f2e3a4b5c6d"
DATA_DIR_HELP = (
    "default: $CINDERBLOCK_DATA_DIR, else ./.cinderblock (volumes, images, and the embedded "
    "PostgreSQL and NATS of `cinderblock dev`)"
)


class _Version(argparse.Action):
    """``--version``: the installed distribution's version (looked up only when asked)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("cinderblock")
        except PackageNotFoundError:
            found = "unknown (not installed)"
        print(f"cinderblock {found}")
        parser.exit()


def add_config_file_argument(parser: argparse.ArgumentParser, dest: str) -> None:
    """``--config-file PATH``, repeatable, before or after the subcommand (``config_files``
    joins both)."""
    parser.add_argument(
        "--config-file",
        dest=dest,
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="an INI file in cinder.conf's form (repeatable: later files override earlier "
        "ones; CINDERBLOCK_* variables override files); see docs/configuration.md",
    )


def config_files(args: argparse.Namespace) -> list[Path]:
    """Every ``--config-file`` given, in order."""
    return [*getattr(args, "config_files", []), *getattr(args, "command_config_files", [])]


def _command(sub: Any, name: str, *, help: str, examples: Sequence[str]) -> Any:
    """A subcommand with its help, examples shown by ``--help``, and ``--config-file``."""
    parser = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_file_argument(parser, "command_config_files")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and option of ``cinderblock`` (nothing heavy is imported here:
    ``--help`` and a mistyped option answer at once)."""
    parser = argparse.ArgumentParser(
        prog="cinderblock",
        description="Cinderblock: an event-sourced, Cinder-compatible volume service.",
        epilog="examples:\n  cinderblock dev\n  cinderblock serve api --config-file "
        "/etc/cinderblock/cinderblock.conf\n  cinderblock config\n  cinderblock COMMAND --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version, exit")
    add_config_file_argument(parser, "config_files")
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "text"),
        default=None,
        help="log lines as JSON or text; auto (default): text when stderr is a terminal",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    dev = _command(
        sub,
        "dev",
        help="run everything locally with embedded PostgreSQL and NATS",
        examples=["cinderblock dev", "cinderblock dev --data-dir /tmp/cb --inject extend=fail"],
    )
    dev.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    dev.add_argument("--host", default=None, help="API address (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=None, help="API port (default 8776)")
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
    serve = _command(
        sub,
        "serve",
        help="run one service against its PostgreSQL and NATS (database_url, nats_url)",
        examples=[
            "cinderblock serve api --config-file /etc/cinderblock/cinderblock.conf",
            "CINDERBLOCK_DATABASE_URL=postgresql://u:p@db/cb CINDERBLOCK_NATS_URL=nats://n:4222 "
            "cinderblock serve sagas",
        ],
    )
    serve.add_argument("service", choices=SERVICES, help="the service to run")
    serve.add_argument("--host", default=None, help="api only: address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="api only: port (default 8776)")
    serve.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="api only: worker processes sharing the port (SO_REUSEPORT)",
    )
    bench = _command(
        sub,
        "bench",
        help="measure a running Cinderblock over HTTP",
        examples=[
            "cinderblock bench --url http://127.0.0.1:8776 --scenarios extend_e2e --seconds 5",
            "cinderblock bench --burst --url http://127.0.0.1:8776,http://127.0.0.1:8777",
        ],
    )
    bench.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8776")
    bench.add_argument(
        "--seconds", type=float, default=10.0, help="per scenario and concurrency (default 10)"
    )
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("ops/bench/results"),
        help="where reports are written (default ops/bench/results)",
    )
    bench.add_argument(
        "--scenarios", default=None, help="comma-separated subset, e.g. extend_e2e,migrate_e2e"
    )
    bench.add_argument(
        "--lag",
        action="store_true",
        help="also sample consumer lag (the database and NATS of CINDERBLOCK_DATABASE_URL/"
        "CINDERBLOCK_NATS_URL, else of the `cinderblock dev` running under --data-dir)",
    )
    bench.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
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
    _config_parser(sub)
    return parser


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """The shared ``--data-dir`` option of tooling commands."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the embedded PostgreSQL of this data dir, used when no database_url is set "
        "(default: $CINDERBLOCK_DATA_DIR, else ./.cinderblock, as `cinderblock dev`; a "
        "running dev is reused)",
    )


def timestamp(text: str) -> datetime:
    """ISO 8601; without a zone it is UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from err
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def positive(text: str) -> int:
    """A whole number of at least 1."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {text!r}")
    return number


def microversion(text: str) -> APIVersion:
    """A microversion this service serves, ``3.0`` to the newest."""
    try:
        version = APIVersion.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err} (e.g. {MAX_VERSION})") from err
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise argparse.ArgumentTypeError(
            f"microversion {text} is not served: {MIN_VERSION} to {MAX_VERSION}"
        )
    return version


def volume_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a volume id: {text!r}") from err


def _audit_parsers(sub: Any) -> None:
    """history, state, audit (``cli/audit.py``)."""
    history = _command(
        sub,
        "history",
        help="a volume's events, with what each changed",
        examples=[f"cinderblock history {VOLUME}", f"cinderblock history {VOLUME} --json"],
    )
    history.add_argument("volume_id", type=volume_id, help="the volume's id")
    history.add_argument("--json", action="store_true", help="JSON lines for tools")
    add_data_dir_argument(history)
    state = _command(
        sub,
        "state",
        help="a volume as it was, rebuilt from its events (now, without --at or --version)",
        examples=[
            f"cinderblock state {VOLUME}",
            f"cinderblock state {VOLUME} --version 3",
            f"cinderblock state {VOLUME} --at 2026-12-01T10:00:00 --microversion 3.0",
        ],
    )
    state.add_argument("volume_id", type=volume_id, help="the volume's id")
    when = state.add_mutually_exclusive_group()
    when.add_argument("--at", type=timestamp, help="ISO 8601 time (UTC without a zone)")
    when.add_argument(
        "--version", type=positive, help="the volume's version (its events up to this one)"
    )
    state.add_argument(
        "--microversion",
        type=microversion,
        default=MAX_VERSION,
        help=f"the API view as of this microversion ({MIN_VERSION} to {MAX_VERSION}, default "
        "the newest)",
    )
    state.add_argument("--base-url", default=None, help="for links; default host:port")
    add_data_dir_argument(state)
    audit = _command(
        sub,
        "audit",
        help="CADF records of API actions, one per request",
        examples=["cinderblock audit --since 2026-12-01 --project PROJECT_ID --format jsonl"],
    )
    audit.add_argument(
        "--since", type=timestamp, required=True, help="ISO 8601, UTC without a zone"
    )
    audit.add_argument("--until", type=timestamp, default=None, help="exclusive (default now)")
    audit.add_argument("--project", default=None, help="requests made by this project")
    audit.add_argument(
        "--format",
        choices=("cadf", "jsonl"),
        default="cadf",
        help="a CADF JSON array (default) or one record per line",
    )
    add_data_dir_argument(audit)


def _usage_parser(sub: Any) -> None:
    """usage (``cli/usage.py``)."""
    parser = _command(
        sub,
        "usage",
        help="billed GiB·hours per volume and type over a window",
        examples=["cinderblock usage --project PROJECT_ID --since 2026-11-01 --format csv"],
    )
    parser.add_argument("--project", default=None, help="one project (default: every project)")
    parser.add_argument(
        "--since",
        default=None,
        help="ISO 8601, UTC without a zone (default: the first of the month)",
    )
    parser.add_argument("--until", default=None, help="ISO 8601, exclusive (default: now)")
    parser.add_argument(
        "--format", choices=("table", "json", "csv"), default="table", help="default table"
    )
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
    rp = _command(
        sub,
        "replay",
        help="rebuild read models from the event log and swap them in atomically",
        examples=["cinderblock replay", "cinderblock replay --projection volumes,billing --json"],
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
    vf = _command(
        sub,
        "verify",
        help="rebuild into side tables and diff them against the live read models",
        examples=["cinderblock verify", "cinderblock verify --projection volumes --json"],
    )
    vf.add_argument(
        "--projection",
        type=projections,
        default=PROJECTED_TABLES,
        help=f"a comma-separated subset of {', '.join(PROJECTED_TABLES)} (default all)",
    )
    vf.add_argument("--json", action="store_true", help="summary and differences as JSON")
    vf.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    add_data_dir_argument(vf)
    bl = _command(
        sub,
        "bench-log",
        help="generate a realistic event log (benchmarks) into a database of its own",
        examples=[
            "cinderblock bench-log --events 100000",
            "cinderblock bench-log --events 100000 --database bench2 --append",
            "CINDERBLOCK_DATABASE_URL=postgresql://u:p@db/bench2 cinderblock replay",
        ],
    )
    bl.add_argument("--events", type=positive, required=True, help="how many events")
    bl.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    bl.add_argument(
        "--database",
        default=BENCH_DATABASE,
        help="the database of its own, created on the server of the target database when "
        f"missing (default {BENCH_DATABASE})",
    )
    bl.add_argument(
        "--append",
        action="store_true",
        help="add to a --database that already holds events",
    )
    bl.add_argument(
        "--live",
        action="store_true",
        help="write into the target database itself (database_url, else the data dir's), "
        "beside its own events: its services will see them",
    )
    add_data_dir_argument(bl)


BENCH_DATABASE = "cinderblock_bench_log"


def _config_parser(sub: Any) -> None:
    """config (``cli/config.py``)."""
    parser = _command(
        sub,
        "config",
        help="print the effective settings and where each came from (secrets masked)",
        examples=[
            "cinderblock config --config-file /etc/cinderblock/cinderblock.conf",
            "cinderblock config --json",
            "cinderblock config --reference > docs/configuration.md",
        ],
    )
    parser.add_argument("--json", action="store_true", help="one JSON object for tools")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="instead: the reference of every setting (docs/configuration.md), as Markdown",
    )
