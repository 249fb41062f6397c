"""`cinderblock history`, `cinderblock state` and `cinderblock audit`: a volume's story, a
volume as it was, and CADF records of API actions, all read from the event log of the
database `cinderblock.cli.target` picks (CINDERBLOCK_DATABASE_URL, else --data-dir)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg

from cinderblock.cli.target import database

if TYPE_CHECKING:
    from cinderblock.config.settings import Settings

# Each command imports what it reads with (a CLI run is mostly start-up: ``history`` needs
# neither the read-model fold nor the API's views).

COMMANDS = ("history", "state", "audit")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    async with database(settings) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            if args.command == "history":
                return await _history(conn, args)
            if args.command == "state":
                return await _state(conn, args, settings)
            return await _audit(conn, args)
        finally:
            await conn.close()


def _missing(vid: UUID) -> int:
    print(f"cinderblock: volume {vid} has no events", file=sys.stderr)
    return 1


async def _history(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    from cinderblock.audit.history import render_table, volume_history
    from cinderblock.audit.log import volume_story
    from cinderblock.audit.requests import refused_about

    own, related = await volume_story(conn, args.volume_id)
    if not own:
        return _missing(args.volume_id)
    about = [str(args.volume_id), *sorted({str(e.aggregate_id) for e in related})]
    rows = volume_history(own, related, await refused_about(conn, about))
    if args.json:
        for row in rows:
            print(json.dumps(row.as_json()))
    else:
        print(render_table(rows))
    return 0


async def _state(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    from cinderblock.audit.log import aggregate_events
    from cinderblock.audit.state import rows
    from cinderblock.wire.views import ViewContext, volume_detail

    own = await aggregate_events(conn, [args.volume_id])
    if not own:
        return _missing(args.volume_id)
    newest = max(e.version for e in own if e.aggregate_id == args.volume_id)
    if args.version is not None and args.version > newest:
        print(
            f"cinderblock: volume {args.volume_id} has versions 1 to {newest}; "
            f"--version {args.version} is beyond them",
            file=sys.stderr,
        )
        return 2
    found = await rows(conn, own, version=args.version, at=args.at)
    volume = found.volume(args.volume_id, deleted=True)
    if volume is None:
        print(f"cinderblock: volume {args.volume_id} did not exist then", file=sys.stderr)
        return 1
    ctx = ViewContext(
        version=args.microversion,
        is_admin=True,
        roles=frozenset({"admin"}),
        base_url=args.base_url or f"http://{settings.host}:{settings.port}",
        project_in_url=volume["project_id"],
    )
    view = volume_detail(volume, ctx, extended=True)
    print(json.dumps({"volume": view}, indent=2))
    return 0


async def _audit(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    from cinderblock.audit.requests import window_records

    found = await window_records(conn, args.since, args.until, project_id=args.project)
    if args.format == "jsonl":
        for item in found:
            print(json.dumps(item))
    else:
        print(json.dumps(found, indent=2))
    return 0
