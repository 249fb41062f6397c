"""`cinderblock usage --project P --since T --until T [--format table|json|csv]`: billed
GiB·hours of volumes and snapshots from the billing ledger of the database
`cinderblock.cli.target` picks (CINDERBLOCK_DATABASE_URL, else the embedded PostgreSQL of
--data-dir). One line per volume (and type) and per snapshot, told apart by `resource`; the
table ends with the volumes', the snapshots' and the whole total."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from datetime import UTC, datetime
from typing import Any

import asyncpg

from cinderblock.cli.target import database
from cinderblock.config.settings import Settings
from cinderblock.usage.report import usage_body, window
from cinderblock.usage.schema import USAGE_DDL
from cinderblock.usage.store import usage

FIELDS = (
    "project_id",
    "resource",
    "volume_id",
    "snapshot_id",
    "volume_type_id",
    "hours",
    "gib_hours",
)


def _lines(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's volume and snapshot lines, each with every field (blank when none)."""
    lines = [{"resource": "volume", "snapshot_id": ""} | row for row in report["volumes"]]
    lines += [{"resource": "snapshot"} | row for row in report["snapshots"]]
    return [{k: row[k] for k in FIELDS} for row in lines]


def render(body: dict[str, Any], fmt: str) -> str:
    report = body["usage"]
    if fmt == "json":
        return json.dumps(body, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_lines(report))
        return out.getvalue().rstrip("\n")
    rows = [[str(row[k]) for k in FIELDS] for row in _lines(report)]
    blank = [""] * (len(FIELDS) - 2)
    rows.append(["volumes total", *blank, str(report["volume_gib_hours"])])
    rows.append(["snapshots total", *blank, str(report["snapshot_gib_hours"])])
    rows.append(["total", *blank, str(report["total_gib_hours"])])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(FIELDS)]
    lines = [
        f"usage {report['since']} .. {report['until']} (GiB*hours)",
        "  ".join(h.ljust(w) for h, w in zip(FIELDS, widths, strict=True)),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        since, until = window(args.since, args.until, datetime.now(UTC))
    except ValueError as err:
        print(f"cinderblock usage: {err}", file=sys.stderr)
        return 2
    async with database(settings) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(USAGE_DDL)
            rows = await usage(conn, project_id=args.project, since=since, until=until)
        finally:
            await conn.close()
    print(render(usage_body(rows, project_id=args.project, since=since, until=until), args.format))
    return 0
