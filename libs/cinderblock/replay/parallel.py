"""Fold a long log with several processes: decoding and folding are Python work, bound by
one core per process, while PostgreSQL has cores to spare.

Every read-model row is changed by the events of one aggregate only (a volume's row and
its attachments by the volume's events, a snapshot's by the snapshot's…), so the
aggregates can be split into disjoint shares (``source._PARTITION``), each folded by its
own process into the same side tables, in the log's order within the share. The shares
stop at one fixed position; the rebuild then continues from there in one process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
from collections.abc import Callable, Sequence
from typing import Any

from cinderblock.replay.source import pages
from cinderblock.store.eventstore import START, Position

# Below this many events a single process is faster than starting workers.
PARALLEL_FROM = 150_000


def default_workers(events: int) -> int:
    if events < PARALLEL_FROM:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


async def fold_share(
    dsn: str,
    schema: str,
    tables: Sequence[str],
    share: tuple[int, int],
    upto: Position,
    on_page: Callable[[int], None],
) -> int:
    """Fold share ``share`` of the log up to ``upto`` into ``schema``'s tables."""
    from cinderblock.readmodels.rowstore import Folder, load_specs
    from cinderblock.readmodels.steps import STEPS
    from cinderblock.replay.decode import Decoder
    from cinderblock.replay.rebuild import KEEP_ROWS, PAGE_SIZE, connections, wanted_events

    async with connections(dsn) as (conn, reader):
        specs = await load_specs(conn, schema, tables)
        # Fresh for this share: no other process writes a row of these aggregates.
        folder = Folder(conn, specs, STEPS, schema=schema, keep=KEEP_ROWS, fresh=True)
        decode = Decoder(wanted=wanted_events(tables))
        count = 0
        async for page in pages(reader, START, upto, size=PAGE_SIZE, share=share):
            events = [decode(r[4], r[2], r[3], r[5]) for r in page]
            await folder.fold([e for e in events if e is not None])
            count += len(page)
            on_page(len(page))
        await folder.flush()
        return count


def _worker(
    dsn: str,
    schema: str,
    tables: Sequence[str],
    share: tuple[int, int],
    upto: tuple[int, int],
    counter: Any,
    results: Any,
) -> None:
    def on_page(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    try:
        count = asyncio.run(fold_share(dsn, schema, tables, share, Position(*upto), on_page))
    except BaseException as err:  # reported to the parent, which fails the rebuild
        results.put((share[0], None, f"{type(err).__name__}: {err}"))
        raise
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results.put((share[0], count, rss_kib))


async def fold_in_parallel(
    dsn: str,
    schema: str,
    tables: Sequence[str],
    upto: Position,
    workers: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, float]:
    """Run ``workers`` processes, one share each. Returns (events folded, the largest
    worker's peak RSS in MiB)."""
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                dsn,
                schema,
                list(tables),
                (k, workers),
                (upto.tx_id, upto.position),
                counter,
                results,
            ),
            name=f"cinderblock-replay-{k}",
            daemon=True,
        )
        for k in range(workers)
    ]
    for p in procs:
        p.start()
    done: dict[int, tuple[int, int]] = {}
    try:
        while len(done) < workers:
            while not results.empty():
                k, count, extra = results.get()
                if count is None:
                    raise RuntimeError(f"replay worker {k} failed: {extra}")
                done[k] = (count, extra)
            if progress:
                progress(counter.value)
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead and results.empty():
                raise RuntimeError(f"replay worker {dead[0].name} exited with {dead[0].exitcode}")
            await asyncio.sleep(0.2)
    finally:
        for p in procs:
            if p.is_alive() and len(done) < workers:
                p.terminate()
            p.join(timeout=10)
    if progress:
        progress(counter.value)
    return sum(c for c, _ in done.values()), max(r for _, r in done.values()) / 1024
