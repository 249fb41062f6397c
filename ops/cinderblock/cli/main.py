"""The `cinderblock` command."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from cinderblock.cli.parsers import build_parser

if TYPE_CHECKING:
    from cinderblock.config.settings import Settings


async def _serve(name: str, settings: Settings, *, workers: int = 1) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from cinderblock.cli.system import run_service

    await run_service(name, settings, stop=stop, workers=workers)


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
    args = build_parser().parse_args(argv)
    from cinderblock.cli.parsers import config_files
    from cinderblock.config.settings import SettingsError, resolve_settings
    from cinderblock.runtime.infra import setup_logging

    try:
        names = ("data_dir", "host", "port", "inject", "log_format")
        overrides = {k: getattr(args, k, None) for k in names}
        files = config_files(args)
        resolved = resolve_settings(config_files=files, **overrides)
        settings = resolved.settings
    except SettingsError as err:
        print(f"cinderblock: {err}", file=sys.stderr)
        return 2
    setup_logging(settings)
    try:
        if args.command == "config":
            from cinderblock.cli import config

            return config.run(args, resolved, files)
        if args.command == "dev":
            from cinderblock.cli.dev import run_dev

            _run(run_dev(settings, processes=args.processes, workers=args.workers))
        elif args.command == "serve":
            _run(_serve(args.service, settings, workers=args.workers))
        elif args.command == "bench" and args.burst:
            from cinderblock.cli.bench_burst import run_burst_bench

            urls = [u.strip() for u in args.url.split(",") if u.strip()]
            _run(run_burst_bench(urls, args.workers, args.volumes, args.out))
        elif args.command == "bench" and args.open_loop:
            from cinderblock.cli.bench_open import parse_rates, run_open_loop_bench

            _run(
                run_open_loop_bench(
                    args.url,
                    rates=parse_rates(args.open_loop),
                    seconds=args.seconds,
                    out=args.out,
                    plots=args.plots,
                )
            )
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
                    plots=args.plots,
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
    except BrokenPipeError:
        # The reader went away (`cinderblock config | head`): nothing more to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
