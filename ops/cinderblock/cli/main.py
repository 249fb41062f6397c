"""The `cinderblock` command."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from cinderblock.cli.system import SERVICES, run_service
from cinderblock.config.settings import Settings, SettingsError, load_settings
from cinderblock.runtime.infra import setup_logging


def _parser() -> argparse.ArgumentParser:
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
    serve = sub.add_parser(
        "serve", help="run one service against CINDERBLOCK_DATABASE_URL and CINDERBLOCK_NATS_URL"
    )
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--data-dir", type=Path, default=None, help="driver pools, image store")
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
    from cinderblock.cli import audit

    audit.add_parsers(sub)
    from cinderblock.cli import usage

    usage.add_parser(sub)
    from cinderblock.cli import replay

    replay.add_parsers(sub)
    return parser


async def _serve(name: str, settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_service(name, settings, stop=stop)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where available (faster sockets for aiohttp, asyncpg and nats)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        overrides = {k: getattr(args, k, None) for k in ("data_dir", "host", "port", "inject")}
        settings = load_settings(**overrides)
    except SettingsError as err:
        print(f"cinderblock: {err}", file=sys.stderr)
        return 2
    setup_logging(settings)
    try:
        if args.command == "dev":
            from cinderblock.cli.dev import run_dev

            _run(run_dev(settings, processes=args.processes))
        elif args.command == "serve":
            _run(_serve(args.service, settings))
        elif args.command == "bench" and args.burst:
            from cinderblock.cli.bench_burst import run_burst_bench

            urls = [u.strip() for u in args.url.split(",") if u.strip()]
            _run(run_burst_bench(urls, args.workers, args.volumes, args.out))
        elif args.command == "bench":
            from cinderblock.cli.bench import run_bench
            from cinderblock.cli.lag import lag_probe

            probe = lag_probe(settings) if args.lag else None
            _run(
                run_bench(
                    args.url,
                    seconds=args.seconds,
                    out=args.out,
                    scenarios=args.scenarios,
                    probe=probe,
                )
            )
        elif args.command in ("history", "state", "audit"):
            from cinderblock.cli import audit

            return asyncio.run(audit.run(args, settings))
        elif args.command == "usage":
            from cinderblock.cli import usage

            return asyncio.run(usage.run(args, settings))
        elif args.command in ("replay", "verify", "bench-log"):
            from cinderblock.cli import replay

            return replay.main(args, settings)
    except SettingsError as err:
        print(f"cinderblock: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
