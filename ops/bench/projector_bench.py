"""Live projector catch-up: how fast ``cinderblock serve projector``'s code folds a log it
is behind on (the tail's batches, each applied with its tracking row in one transaction).

    CINDERBLOCK_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        python ops/bench/projector_bench.py --events 30000

Creates a scratch database, fills it with ``cinderblock bench-log``, runs the projector from
position 0 until it has reached the log's end, prints events/s and batches, and drops the
database. Run it from two trees (``PYTHONPATH=<tree>/libs:<tree>/services:<tree>/ops``) to
compare them on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from cinderblock.projector.run import Projector
from cinderblock.runtime.infra import create_schemas
from cinderblock.store.eventstore import Position


def _with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def main(events: int) -> None:
    server = os.environ["CINDERBLOCK_DATABASE_URL"]
    name = f"projbench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = _with_db(server, name)
    try:
        env = {**os.environ, "CINDERBLOCK_DATABASE_URL": dsn, "CINDERBLOCK_LOG_LEVEL": "WARNING"}
        filler = await asyncio.create_subprocess_exec(
            *(
                sys.executable,
                "-m",
                "cinderblock.cli.main",
                "bench-log",
                "--events",
                str(events),
                "--live",
            ),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        if await filler.wait() != 0:
            raise SystemExit("bench-log failed")
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4)
        try:
            await create_schemas(pool)
            await pool.execute("VACUUM ANALYZE events")
            end = await pool.fetchrow(
                "SELECT tx_id::text::bigint AS t, position AS p FROM events "
                "ORDER BY tx_id DESC, position DESC LIMIT 1"
            )
            projector = Projector(pool, name="bench")
            stop = asyncio.Event()
            batches = 0
            original = projector.project

            async def counted(batch):  # type: ignore[no-untyped-def]
                nonlocal batches
                batches += 1
                done = await original(batch)
                if (batch[-1].tx_id, batch[-1].position) >= (end["t"], end["p"]):
                    stop.set()
                return done

            projector.project = counted  # type: ignore[method-assign]
            started = time.perf_counter()
            await projector.follow(stop)
            took = time.perf_counter() - started
            reached = await projector.position()
            assert reached >= Position(end["t"], end["p"]), reached
            rows = await pool.fetchval("SELECT count(*) FROM volumes")
        finally:
            await pool.close()
        print(
            f"{events:,} events in {took:.2f} s: {events / took:,.0f} events/s, "
            f"{batches} batches, {rows:,} volume rows"
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    asyncio.run(main(parser.parse_args().events))
