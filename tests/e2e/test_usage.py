"""Billing end to end: a volume's life over HTTP, its GiB·hours from `GET /os-usage` and
from `cinderblock usage` equal the fold of its stored events, exact to the timestamps."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cinderblock.usage.ledger import gib_hours, volume_intervals
from cinderblock.usage.store import EventReader
from tests.e2e.conftest import System

pytestmark = pytest.mark.e2e


async def _billed_life(system: System) -> tuple[Any, dict[str, Any], datetime, datetime]:
    """create 1 GiB, extend to 3, delete; returns (client, volume, since, until) once the
    billing ledger has the deletion."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    owner = system.client.as_(project_id=uuid.uuid4().hex)
    volume = await owner.create_volume(1)
    await system.until_status(volume["id"], "available")
    reply = await owner.action(volume["id"], {"os-extend": {"new_size": 3}})
    assert reply.status == 202, reply.text
    extended = await system.until_volume(volume["id"], lambda v: v is not None and v["size"] == 3)
    assert extended is not None
    await system.until_status(volume["id"], "available")
    assert (await owner.request("DELETE", f"/volumes/{volume['id']}")).status == 202
    vid = uuid.UUID(volume["id"])

    async def ledger_has_the_delete() -> bool:
        last = await system.pool.fetchval(
            "SELECT max(originator_version) FROM events WHERE originator_id = $1", vid
        )
        applied = await system.pool.fetchval(
            "SELECT version FROM billing_volumes WHERE volume_id = $1", vid
        )
        closed = await system.pool.fetchval(
            "SELECT bool_and(ended_at IS NOT NULL) FROM billing_intervals WHERE volume_id = $1",
            vid,
        )
        return bool(last and applied == last and closed)

    await system.projected.until(ledger_has_the_delete)
    return owner, volume, since, datetime.now(UTC) + timedelta(seconds=1)


async def _folded(system: System, volume_id: str, since: datetime, until: datetime) -> Decimal:
    vid = uuid.UUID(volume_id)
    events = await EventReader().events_of(system.pool, vid, 10_000)
    return gib_hours(volume_intervals(volume_id, events), since, until)


async def test_os_usage_equals_the_fold_of_the_events(system: System) -> None:
    owner, volume, since, until = await _billed_life(system)
    reply = await owner.request(
        "GET", f"/os-usage?since={since.isoformat()}&until={until.isoformat()}".replace("+", "%2B")
    )
    assert reply.status == 200, reply.text
    body = reply.json["usage"]
    assert body["project_id"] == owner.project_id
    (row,) = body["volumes"]
    assert row["volume_id"] == volume["id"]
    expected = await _folded(system, volume["id"], since, until)
    assert expected > 0
    assert row["gib_hours"] == pytest.approx(float(expected), abs=1e-6)
    assert body["total_gib_hours"] == row["gib_hours"]
    assert [t["volume_type_id"] for t in body["volume_types"]] == [row["volume_type_id"]]
    assert body["snapshots"] == []
    assert body["volume_gib_hours"] == body["total_gib_hours"]
    assert body["projects"] == [
        {
            "project_id": owner.project_id,
            "gib_hours": row["gib_hours"],
            "volume_gib_hours": row["gib_hours"],
            "snapshot_gib_hours": 0.0,
        }
    ]


async def test_os_usage_refuses_bad_windows_and_other_projects(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex, roles="member,reader")
    for query in ("since=yesterday", "until=2026-13-01", "since=2026-02-01&until=2026-01-01"):
        reply = await client.request("GET", f"/os-usage?{query}")
        assert reply.status == 400, (query, reply.text)
        assert "badRequest" in reply.json
    other = uuid.uuid4().hex
    assert (await client.request("GET", f"/os-usage/{other}")).status == 403
    assert (await client.request("GET", f"/os-usage/{client.project_id}")).status == 200
    admin = system.client.as_(project_id=uuid.uuid4().hex)
    reply = await admin.request("GET", f"/os-usage/{other}")
    assert reply.status == 200
    assert reply.json["usage"]["volumes"] == []


async def _cli(system: System, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "CINDERBLOCK_DATABASE_URL": system.settings.database_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cinderblock.cli.main",
        "usage",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_cli_usage_in_json_csv_and_table(system: System) -> None:
    owner, volume, since, until = await _billed_life(system)
    window = ["--project", owner.project_id, "--since", since.isoformat()]
    window += ["--until", until.isoformat()]
    expected = float(await _folded(system, volume["id"], since, until))

    code, out, err = await _cli(system, *window, "--format", "json")
    assert code == 0, err
    body = json.loads(out)["usage"]
    assert body["total_gib_hours"] == pytest.approx(expected, abs=1e-6)

    code, out, err = await _cli(system, *window, "--format", "csv")
    assert code == 0, err
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["volume_id"] == volume["id"]
    assert float(row["gib_hours"]) == pytest.approx(expected, abs=1e-6)

    code, out, err = await _cli(system, *window)
    assert code == 0, err
    assert volume["id"] in out
    assert out.splitlines()[-1].startswith("total")

    code, _, err = await _cli(system, "--since", "not-a-time")
    assert code == 2
    assert "usage" in err
