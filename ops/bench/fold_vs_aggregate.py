"""How fast can the read models be built from a log: by the projection's steps on plain
event data (``readmodels.steps`` through ``rowstore.Folder``, what replay and the live
projector run), or as views of the aggregates' own state (each event decoded to its domain
object and applied to the aggregate with its ``mutate``, as the command side rebuilds a
Volume)? Both in memory, one process, no writes: the CPU cost of the fold alone.

    CINDERBLOCK_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/foldbench \\
        python ops/bench/fold_vs_aggregate.py

(fill the database first: ``cinderblock bench-log --events 60000 --live``). Prints events/s of
each way; the figures and what was decided from them are in ``HISTORY.md`` (issue 10).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import asyncpg
from eventsourcing.persistence import StoredEvent

from cinderblock.readmodels.rowstore import Folder
from cinderblock.readmodels.schema import READMODELS_DDL
from cinderblock.readmodels.steps import STEPS
from cinderblock.readmodels.tables import PROJECTED_TABLES, load_specs
from cinderblock.replay.decode import Decoder
from cinderblock.store.mapping import make_mapper


async def main() -> None:
    conn = await asyncpg.connect(os.environ["CINDERBLOCK_DATABASE_URL"])
    try:
        rows = await conn.fetch(
            "SELECT tx_id::text::bigint, position, originator_id, originator_version, topic, "
            "state FROM events ORDER BY tx_id, position"
        )
        await conn.execute(READMODELS_DDL)  # the row layout (a bench-log database has none)
        specs = await load_specs(conn, "public", PROJECTED_TABLES)
    finally:
        await conn.close()
    print(f"{len(rows):,} events")

    for _ in range(2):  # the second round is the one that counts (warm caches)
        started = time.perf_counter()
        decoder = Decoder(wanted=STEPS)
        events, _bad = decoder.rows(rows, "bench")
        folder = Folder(None, specs, STEPS, fresh=True)  # type: ignore[arg-type]
        await folder.fold(events)  # type: ignore[arg-type]
        steps_s = time.perf_counter() - started

        started = time.perf_counter()
        mapper = make_mapper()
        aggregates: dict[Any, Any] = {}
        for r in rows:
            event = mapper.to_domain_event(StoredEvent(r[2], r[3], r[4], r[5]))
            aggregates[r[2]] = event.mutate(aggregates.get(r[2]))
        aggregate_s = time.perf_counter() - started

    n = len(rows)
    print(f"steps on plain data (decoder + folder): {n / steps_s:,.0f} events/s")
    print(f"aggregate state (mapper + mutate):      {n / aggregate_s:,.0f} events/s")
    print(f"ratio: {aggregate_s / steps_s:.1f}x slower as aggregate state (before any row mapping)")


if __name__ == "__main__":
    asyncio.run(main())
