"""What must hold once the system is quiet again after a fault, each check limited to the
volumes and requests of that fault's load:

- lost: a 2xx answer whose request id is on no API event, or (an asynchronous action) on no
  saga event: the action was acknowledged and then forgotten;
- doubled: a completion recorded twice (two events of one topic caused by one event:
  ``meta.causation_id``), a driver step that did its work twice (the sagas' log lines
  "created/extended/deleted/migrated volume", "exported volume", "removed export" counted
  per step key), an image file that should not exist (a volume gone or a second copy), a
  usage ledger with two open intervals or an open one for a deleted volume, Nova told
  twice of one in-use extend;
- stuck: a volume (or attachment) left in a transient status;
- verify: `cinderblock verify` (a subprocess on the same database) finds no difference.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from cinderblock.chaos.load import MIGRATING, TRANSIENT, Answer

# Actions whose 2xx starts a saga: the saga's completion must carry the request id too.
ASYNC_KINDS = frozenset(
    {"create", "extend", "extend-in-use", "attach-connect", "detach", "retype", "migrate", "delete"}
)
# The file driver's log lines that mean "did the work" (the "already …" lines do not).
EFFECT_LINES = (
    "created volume",
    "extended volume",
    "deleted volume",
    "migrated volume",
    "exported volume",
    "removed export",
)
QUIET_S = 2.0


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    verify: str = "not run"
    verify_ok: bool = False

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.stuck) and self.verify_ok


async def quiesce(dsn: str, volume_ids: list[str], timeout: float = 60.0) -> list[str]:
    """Wait until no volume of ``volume_ids`` is in a transient status, the event log has not
    grown for QUIET_S seconds and billing has applied every volume's last version; what was
    still not so at the deadline."""
    ids = [uuid.UUID(v) for v in volume_ids]
    deadline = time.monotonic() + timeout
    last: tuple[Any, ...] = ()
    quiet_since = time.monotonic()
    conn = await _connect(dsn, deadline)
    try:
        while True:
            top = await conn.fetchval("SELECT max(position) FROM events")
            moving = await _transient_rows(conn, ids)
            behind = await conn.fetch(
                "SELECT e.originator_id::text AS id, max(e.originator_version) AS v, "
                "b.version AS b FROM events e LEFT JOIN billing_volumes b "
                "ON b.volume_id = e.originator_id WHERE e.originator_id = ANY($1) "
                "GROUP BY e.originator_id, b.version "
                "HAVING b.version IS DISTINCT FROM max(e.originator_version)",
                ids,
            )
            state = (top, len(moving), len(behind))
            if state != last:
                last, quiet_since = state, time.monotonic()
            if not moving and not behind and time.monotonic() - quiet_since >= QUIET_S:
                return []
            if time.monotonic() > deadline:
                return [f"transient at the deadline: {r}" for r in moving] + [
                    f"billing behind: {r['id']} at {r['b']} of {r['v']}" for r in behind
                ]
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def last_dead_letter(dsn: str) -> int:
    """The id of the newest dead letter so far (0: none)."""
    conn = await _connect(dsn, time.monotonic() + 30)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM dead_letters"))
    finally:
        await conn.close()


async def _connect(dsn: str, deadline: float) -> asyncpg.Connection:
    while True:
        try:
            return await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _transient_rows(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> list[str]:
    rows = await conn.fetch(
        "SELECT id::text, status, migration_status FROM volumes WHERE id = ANY($1)", ids
    )
    found = [
        f"volume {r['id']} {r['status']}/{r['migration_status']}"
        for r in rows
        if r["status"] in TRANSIENT or r["migration_status"] in MIGRATING
    ]
    attachments = await conn.fetch(
        "SELECT id::text, volume_id::text, attach_status FROM attachments "
        "WHERE volume_id = ANY($1) AND NOT deleted AND attach_status IN ('attaching', 'detaching')",
        ids,
    )
    found += [f"attachment {r['id']} of {r['volume_id']} {r['attach_status']}" for r in attachments]
    return found


async def check(
    dsn: str,
    root: Path,
    answers: list[Answer],
    volume_ids: list[str],
    *,
    nova_counts: Counter[str] | None = None,
    nova_expected: list[str] | None = None,
    dead_letters_after: int = 0,
) -> Findings:
    found = Findings()
    ids = [uuid.UUID(v) for v in volume_ids]
    conn = await asyncpg.connect(dsn)
    try:
        await _lost(conn, answers, found)
        doubles = await conn.fetch(
            "SELECT meta->>'causation_id' AS cause, topic, count(*) AS n FROM events "
            "WHERE originator_id = ANY($1) AND meta ? 'causation_id' "
            "GROUP BY 1, 2 HAVING count(*) > 1",
            ids,
        )
        found.doubled += [f"{r['n']} x {r['topic']} caused by {r['cause']}" for r in doubles]
        found.stuck += await _transient_rows(conn, ids)
        live = {
            r["id"]: r["host"]
            for r in await conn.fetch(
                "SELECT id::text, host FROM volumes WHERE id = ANY($1) AND NOT deleted",
                ids,
            )
        }
        await _ledger(conn, ids, set(live), found)
        found.other += [
            f"dead letter: {r['consumer']} {r['msg_id']}: {r['error'][:120]}"
            for r in await conn.fetch(
                "SELECT consumer, msg_id, error FROM dead_letters WHERE id > $1 ORDER BY id",
                dead_letters_after,
            )
        ]
    finally:
        await conn.close()
    found.doubled += await asyncio.to_thread(_driver_steps, root, set(volume_ids))
    found.doubled += await asyncio.to_thread(_files, root, set(volume_ids), live)
    if nova_counts is not None:
        found.doubled += [f"Nova told {n} times of {v}" for v, n in nova_counts.items() if n > 1]
        untold = [v for v in nova_expected or [] if not nova_counts.get(v)]
        if untold:
            found.other.append(
                f"Nova not told of {len(untold)} in-use extend(s) (the notifier skips a volume "
                f"no longer attached when it gets to the event: detached meanwhile?): "
                + ", ".join(untold[:3])
                + (" …" if len(untold) > 3 else "")
            )
    return found


async def _lost(conn: asyncpg.Connection, answers: list[Answer], found: Findings) -> None:
    ok = [a for a in answers if 200 <= a.status < 300]
    ids = [a.request_id for a in ok if a.request_id]
    found.lost += [
        f"{a.kind} {a.volume_id}: 2xx without a request id" for a in ok if not a.request_id
    ]
    rows = await conn.fetch(
        "SELECT meta->>'request_id' AS rid, (meta ? 'actor' AND meta->>'actor' LIKE 'saga:%') "
        "AS saga FROM events WHERE meta->>'request_id' = ANY($1) GROUP BY 1, 2",
        ids,
    )
    api = {r["rid"] for r in rows if not r["saga"]}
    saga = {r["rid"] for r in rows if r["saga"]}
    for a in ok:
        if a.request_id and a.request_id not in api:
            found.lost.append(f"{a.kind} {a.volume_id}: no event of request {a.request_id}")
        elif a.request_id and a.kind in ASYNC_KINDS and a.request_id not in saga:
            found.lost.append(f"{a.kind} {a.volume_id}: no saga completed {a.request_id}")


async def _ledger(
    conn: asyncpg.Connection, ids: list[uuid.UUID], live: set[str], found: Findings
) -> None:
    rows = await conn.fetch(
        "SELECT volume_id::text AS vid, start_version, started_at, ended_at FROM "
        "billing_intervals WHERE volume_id = ANY($1) ORDER BY volume_id, start_version",
        ids,
    )
    by_volume: dict[str, list[Any]] = {}
    for r in rows:
        by_volume.setdefault(r["vid"], []).append(r)
    for vid, intervals in by_volume.items():
        open_ = [r for r in intervals if r["ended_at"] is None]
        if len(open_) > 1:
            found.doubled.append(f"ledger: {len(open_)} open intervals for {vid}")
        if open_ and vid not in live:
            found.doubled.append(f"ledger: an open interval for deleted volume {vid}")
        if open_ and open_[-1] is not intervals[-1]:
            found.doubled.append(f"ledger: an open interval before the last for {vid}")
        for a, b in itertools.pairwise(intervals):
            if a["ended_at"] is not None and a["ended_at"] > b["started_at"]:
                found.doubled.append(f"ledger: overlapping intervals for {vid}")


def _driver_steps(root: Path, volume_ids: set[str]) -> list[str]:
    done: Counter[tuple[str, str, str, str]] = Counter()
    for path in sorted((root / "logs").glob("sagas*.log")):  # sagas.N, sagas-2.N
        for line in path.read_text(errors="replace").splitlines():
            if '"step_key"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            message = str(entry.get("message", ""))
            if entry.get("volume_id") in volume_ids and message.startswith(EFFECT_LINES):
                what = message.split(" ", 1)[0]
                key = (
                    str(entry.get("step_key")),
                    what,
                    entry["volume_id"],
                    str(entry.get("location")),
                )
                done[key] += 1
    return [
        f"driver step {k[0]} ({k[1]} {k[2]} at {k[3]}) did its work {n} times"
        for k, n in done.items()
        if n > 1
    ]


def _files(root: Path, volume_ids: set[str], live: dict[str, str]) -> list[str]:
    """Image files of the load's volumes: exactly one, at its host, for a live volume; none
    for a deleted one; no temporary copy left."""
    problems = []
    seen: dict[str, list[Path]] = {}
    for path in root.glob("*@*/*/*"):
        name = path.name
        start = 7 if name.startswith("volume-") else 8 if name.startswith(".volume-") else 0
        vid = name[start : start + 36] if start else ""
        if vid in volume_ids:
            seen.setdefault(vid, []).append(path)
    for vid, paths in seen.items():
        images = [p for p in paths if p.name == f"volume-{vid}.img"]
        temps = [p for p in paths if p.name.endswith(".tmp")]
        if temps:
            problems.append(f"temporary copies left for {vid}: {[p.name for p in temps]}")
        if vid not in live and images:
            problems.append(f"image of deleted volume {vid} left in {images[0].parent}")
        elif vid in live and len(images) > 1:
            problems.append(f"{len(images)} images of {vid}: {[str(p.parent) for p in images]}")
    return problems


def run_verify(dsn: str, timeout: float = 300.0) -> tuple[bool, str]:
    """`cinderblock verify --json` on ``dsn``: (identical, a short verdict)."""
    code = "import sys; from cinderblock.cli.main import main; sys.exit(main())"
    env = {"CINDERBLOCK_DATABASE_URL": dsn, "CINDERBLOCK_LOG_LEVEL": "WARNING"}
    proc = subprocess.run(
        [sys.executable, "-c", code, "verify", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return False, f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
    if summary["identical"] and proc.returncode == 0:
        return True, "identical"
    differences = summary.get("differences", [])
    quarantined = summary.get("quarantined", [])
    return False, f"{len(differences)} difference(s), {len(quarantined)} quarantined"
