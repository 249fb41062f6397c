"""Fold a long log with several processes: decoding and folding are Python work, bound by
one core per process, while PostgreSQL has cores to spare.

Every read-model row is changed by the events of one aggregate only (a volume's row and
its attachments by the volume's events, a snapshot's by the snapshot's…), so the
aggregates can be split into disjoint shares (``source._PARTITION``), each folded by its
own process into the same side tables, in the log's order within the share. The shares
stop at one fixed position; the rebuild then continues from there in one process.

Workers are plain ``python -m cinderblock.replay.parallel`` processes (a fraction of a
second to start, unlike ``multiprocessing``'s spawn, which re-imports the caller's main
module: the whole CLI); the DSN goes through the environment, never the command line.
They report ``progress <events>`` lines and a final ``done <events> <peak RSS KiB>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cinderblock.replay.decode import Decoder
from cinderblock.replay.folding import PAGE_SIZE, fewer_collections, new_folder, wanted_events
from cinderblock.replay.ledger import VOLUME_TOPICS, WRITE_EVERY, LedgerFold
from cinderblock.replay.session import PROJECTOR, connections
from cinderblock.replay.source import pages
from cinderblock.store.eventstore import START, Position

# Below this many events a single process is faster than starting workers.
PARALLEL_FROM = 150_000
_DSN_ENV = "CINDERBLOCK_REPLAY_DSN"


def default_workers(events: int) -> int:
    if events < PARALLEL_FROM:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class Folded:
    events: int  # log rows read by the workers
    worker_peak_rss_mib: float  # the largest worker's
    ledger_events: int = 0  # volume events folded into the usage ledger


async def fold_share(
    dsn: str,
    schema: str,
    tables: Sequence[str],
    share: tuple[int, int],
    upto: Position,
    on_page: Callable[[int], None],
    ledger: str | None = None,
) -> tuple[int, int]:
    """Fold share ``share`` of the log up to ``upto`` into ``schema``'s tables, and into
    its ledger tables when ``ledger`` (the billing consumer, whose quarantine it keeps) is
    given. Returns (rows read, volume events folded into the ledger)."""
    async with connections(dsn) as (conn, reader):
        decode = Decoder(wanted=wanted_events(tables))
        horizon = START

        # Fresh for this share: no other process writes a row of these aggregates.
        folder = await new_folder(conn, schema, tables, decode, lambda: horizon, fresh=True)
        fold = None if ledger is None else LedgerFold(conn, schema, ledger)
        count = 0
        async for page in pages(reader, START, upto, size=PAGE_SIZE, share=share):
            horizon = Position(page[-1][0], page[-1][1])
            if fold is None:
                events, undecodable = decode.rows(page, PROJECTOR)
            else:
                events, undecodable, volume_events = decode.with_domain(
                    page, PROJECTOR, VOLUME_TOPICS
                )
                fold.fold(volume_events)
                await fold.write(every=WRITE_EVERY)
            folder.set_aside(undecodable)
            await folder.fold(events)
            count += len(page)
            on_page(count)
        await folder.flush()
        if fold is None:
            return count, 0
        await fold.finish(decode, upto)
        return count, fold.events


async def fold_in_parallel(
    dsn: str,
    schema: str,
    tables: Sequence[str],
    upto: Position,
    workers: int,
    progress: Callable[[int], None] | None = None,
    ledger: str | None = None,
) -> Folded:
    """Run ``workers`` processes, one share each (``ledger``: see ``fold_share``)."""
    env = {**os.environ, _DSN_ENV: dsn}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cinderblock.replay.parallel",
            "--schema",
            schema,
            "--tables",
            ",".join(tables),
            "--share",
            f"{k}/{workers}",
            "--upto",
            str(upto),
            *(("--ledger", ledger) if ledger is not None else ()),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for k in range(workers)
    ]
    done = [0] * workers
    finals: dict[int, tuple[int, int, int]] = {}

    async def follow(k: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            word, *rest = line.decode().split()
            if word == "progress":
                done[k] = int(rest[0])
                if progress:
                    progress(sum(done))
            elif word == "done":
                finals[k] = (int(rest[0]), int(rest[1]), int(rest[2]))

    async def errors_of(proc: asyncio.subprocess.Process) -> str:
        assert proc.stderr is not None  # read alongside stdout: a full pipe would block it
        return (await proc.stderr.read()).decode(errors="replace")

    try:
        outcome = await asyncio.gather(
            *(follow(k, p) for k, p in enumerate(procs)), *(errors_of(p) for p in procs)
        )
        errors = outcome[workers:]
        for k, proc in enumerate(procs):
            if await proc.wait() != 0 or k not in finals:
                raise RuntimeError(f"replay worker {k}/{workers} failed: {errors[k][-2000:]}")
    finally:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
    return Folded(
        sum(c for c, _, _ in finals.values()),
        max(r for _, r, _ in finals.values()) / 1024,
        sum(n for _, _, n in finals.values()),
    )


def _main() -> int:
    parser = argparse.ArgumentParser(description="one share of a parallel replay")
    parser.add_argument("--schema", required=True)
    parser.add_argument("--tables", required=True)
    parser.add_argument("--share", required=True, help="k/n")
    parser.add_argument("--upto", required=True, help="tx:position")
    parser.add_argument("--ledger", default=None, help="also the usage ledger (its consumer)")
    args = parser.parse_args()
    k, _, n = args.share.partition("/")

    def on_page(count: int) -> None:
        print(f"progress {count}", flush=True)

    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    with fewer_collections():
        count, ledger_events = run(
            fold_share(
                os.environ[_DSN_ENV],
                args.schema,
                [t for t in args.tables.split(",") if t],
                (int(k), int(n)),
                Position.parse(args.upto),
                on_page,
                args.ledger,
            )
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"done {count} {rss} {ledger_events}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
