"""`cinderblock history`, `cinderblock state` and `cinderblock audit`: a volume's story, a
volume as it was, and CADF records of API actions, all read from the event log of the
database `cinderblock.cli.target` picks (CINDERBLOCK_DATABASE_URL, else --data-dir)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from cinderblock.audit.cadf import records
from cinderblock.audit.history import render_table, volume_history
from cinderblock.audit.log import aggregate_events, volume_story, window_events
from cinderblock.audit.state import rows
from cinderblock.cli.target import add_data_dir_argument, database
from cinderblock.config.settings import Settings
from cinderblock.wire.microversion import MAX_VERSION, APIVersion
from cinderblock.wire.views import ViewContext, volume_detail

COMMANDS = ("history", "state", "audit")


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


def add_parsers(sub: Any) -> None:
    """Register the three commands on the ``cinderblock`` subparsers."""
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
    own, related = await volume_story(conn, args.volume_id)
    if not own:
        return _missing(args.volume_id)
    rows = volume_history(own, related)
    if args.json:
        for row in rows:
            print(json.dumps(row.as_json()))
    else:
        print(render_table(rows))
    return 0


async def _state(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    own = await aggregate_events(conn, [args.volume_id])
    if not own:
        return _missing(args.volume_id)
    found = await rows(conn, own, version=args.version, at=args.at)
    volume = found.volume(args.volume_id, deleted=True)
    if volume is None:
        print(f"cinderblock: volume {args.volume_id} did not exist then", file=sys.stderr)
        return 1
    ctx = ViewContext(
        version=APIVersion.parse(args.microversion),
        is_admin=True,
        roles=frozenset({"admin"}),
        base_url=args.base_url or f"http://{settings.host}:{settings.port}",
        project_in_url=volume["project_id"],
    )
    view = volume_detail(volume, ctx, extended=True)
    print(json.dumps({"volume": view}, indent=2))
    return 0


async def _audit(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    found = records(await window_events(conn, args.since, args.until), project_id=args.project)
    if args.format == "jsonl":
        for item in found:
            print(json.dumps(item))
    else:
        print(json.dumps(found, indent=2))
    return 0
