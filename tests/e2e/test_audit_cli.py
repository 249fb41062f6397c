"""`cinderblock history`, `state` and `audit` on a scripted scenario driven through the HTTP
API of the whole system: create, extend, attach, set bootable, detach, delete."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from cinderblock.cli.main import main
from tests.e2e.conftest import System
from tests.helpers.request_log import until_kept

INSTANCE = "5f0e6c4a-3a51-4b39-9d42-3f6f3b2c9a11"
GLOBAL_ID = f"req-{uuid.uuid4()}"


@pytest.fixture
def cli(
    system: System, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Any]:
    """Runs ``cinderblock <args>`` in a thread against the system's database; returns
    (exit code, stdout)."""
    monkeypatch.setenv("CINDERBLOCK_DATABASE_URL", system.settings.database_url)
    monkeypatch.setenv("CINDERBLOCK_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("CINDERBLOCK_LOG_FORMAT", "text")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    async def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(args))
        return code, capsys.readouterr().out

    try:
        yield run
    finally:
        root.handlers[:], root.level = handlers, level


@pytest.fixture(scope="module")
def scenario_state() -> dict[str, Any]:
    return {}


async def _scenario(system: System) -> dict[str, Any]:
    c = system.client.as_(project_id=uuid.uuid4().hex, user_id="alice")
    statuses: dict[str, int] = {}
    created = await c.request("POST", "/volumes", body={"volume": {"size": 1, "name": "story"}})
    statuses["create"] = created.status
    vid = created.json["volume"]["id"]
    await system.until_status(vid, "available")
    extend = await c.action(
        vid, {"os-extend": {"new_size": 2}}, headers={"X-OpenStack-Request-ID": GLOBAL_ID}
    )
    statuses["os-extend"] = extend.status
    await system.until_volume(vid, lambda v: v is not None and v["size"] == 2)
    await system.until_status(vid, "available")
    attach = {"os-attach": {"instance_uuid": INSTANCE, "mountpoint": "/dev/vdb", "mode": "rw"}}
    statuses["os-attach"] = (await c.action(vid, attach)).status
    bootable = await c.action(vid, {"os-set_bootable": {"bootable": True}})
    statuses["os-set_bootable"] = bootable.status
    shown_reply = await c.as_(version="3.71").show(vid)
    assert shown_reply.status == 200
    shown = shown_reply.json["volume"]
    version_then = await system.pool.fetchval(
        "SELECT max(originator_version) FROM events WHERE originator_id = $1", uuid.UUID(vid)
    )
    [attachment] = shown["attachments"]
    detach = await c.action(vid, {"os-detach": {"attachment_id": attachment["attachment_id"]}})
    statuses["os-detach"] = detach.status
    deleted = await c.request("DELETE", f"/volumes/{vid}")
    statuses["delete"] = deleted.status
    await system.until_volume(vid, lambda v: v is None)
    await until_kept(system.pool, deleted.headers["x-openstack-request-id"])
    return {
        "vid": vid,
        "project": c.project_id,
        "statuses": statuses,
        "shown": shown,
        "version": version_then,
        "ids": {
            name: reply.headers["x-openstack-request-id"]
            for name, reply in (("create", created), ("os-extend", extend))
        },
    }


@pytest.fixture
async def story(system: System, scenario_state: dict[str, Any]) -> dict[str, Any]:
    if not scenario_state:
        scenario_state.update(await _scenario(system))
    return scenario_state


async def test_history_shows_every_event_with_its_change(story: dict[str, Any], cli: Any) -> None:
    code, out = await cli("history", story["vid"], "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    volume_rows = [r for r in rows if r["aggregate"] == "volume"]
    assert [r["version"] for r in volume_rows] == list(range(1, len(volume_rows) + 1))
    events = [r["event"] for r in volume_rows]
    assert events == [
        "Volume.Created",
        "Volume.CreateCompleted",
        "Volume.ExtendRequested",
        "Volume.Extended",
        "Volume.Attached",
        "Volume.BootableSet",
        "Volume.Detached",
        "Volume.DeleteRequested",
        "Volume.Deleted",
    ]
    by_event = {r["event"]: r for r in volume_rows}

    def change(event: str) -> dict[str, tuple[Any, Any]]:
        return {k: (v["before"], v["after"]) for k, v in by_event[event]["changes"].items()}

    assert change("Volume.Created")["status"] == (None, "creating")
    assert change("Volume.Created")["size"] == (None, 1)
    assert change("Volume.CreateCompleted") == {"status": ("creating", "available")}
    assert change("Volume.ExtendRequested") == {"status": ("available", "extending")}
    assert change("Volume.Extended") == {"size": (1, 2), "status": ("extending", "available")}
    assert change("Volume.Attached") == {
        "status": ("available", "in-use"),
        "attachments": ([], [f"{INSTANCE}:attached"]),
    }
    assert change("Volume.BootableSet") == {"bootable": (False, True)}
    assert change("Volume.Detached") == {
        "status": ("in-use", "available"),
        "attachments": ([f"{INSTANCE}:attached"], []),
    }
    assert change("Volume.Deleted") == {"status": ("deleting", "deleted")}
    # Who: the user for API events, the saga for its steps; the request id joins them.
    assert by_event["Volume.Created"]["actor"] == f"alice ({story['project']})"
    assert by_event["Volume.CreateCompleted"]["actor"] == "saga:create"
    assert by_event["Volume.Extended"]["actor"] == "saga:extend"
    extend_id = story["ids"]["os-extend"]
    assert by_event["Volume.ExtendRequested"]["request_id"] == extend_id
    assert by_event["Volume.Extended"]["request_id"] == extend_id

    assert (await cli("history", str(uuid.uuid4())))[0] == 1
    code, table = await cli("history", story["vid"])
    assert code == 0
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["TIME", "VERSION", "EVENT", "ACTOR"]
    assert len(lines) == 1 + len(rows)
    assert "status: extending → available; size: 1 → 2" in lines[4]


async def test_state_at_a_version_is_the_api_view(story: dict[str, Any], cli: Any) -> None:
    base = story["shown"]["links"][0]["href"].split("/v3/")[0]
    args = ["state", story["vid"], "--version", str(story["version"]), "--base-url", base]
    code, out = await cli(*args)
    assert code == 0
    assert json.loads(out)["volume"] == story["shown"]

    code, out = await cli("state", story["vid"], "--version", "3")
    assert code == 0
    then = json.loads(out)["volume"]
    assert (then["status"], then["size"]) == ("extending", 1)


async def test_state_at_a_time(story: dict[str, Any], cli: Any) -> None:
    _, out = await cli("history", story["vid"], "--json")
    times = {
        r["event"]: datetime.fromisoformat(r["time"])
        for r in map(json.loads, out.splitlines())
        if r["aggregate"] == "volume"
    }
    extended = times["Volume.Extended"]
    code, out = await cli("state", story["vid"], "--at", extended.isoformat())
    assert code == 0
    assert (json.loads(out)["volume"]["size"], json.loads(out)["volume"]["status"]) == (
        2,
        "available",
    )
    before = (extended - timedelta(microseconds=1)).isoformat()
    _, out = await cli("state", story["vid"], "--at", before)
    assert (json.loads(out)["volume"]["size"], json.loads(out)["volume"]["status"]) == (
        1,
        "extending",
    )
    created = times["Volume.Created"] - timedelta(seconds=1)
    code, _ = await cli("state", story["vid"], "--at", created.isoformat())
    assert code == 1  # it did not exist yet


async def test_audit_has_one_cadf_record_per_api_request(story: dict[str, Any], cli: Any) -> None:
    since = (datetime.now().astimezone() - timedelta(hours=1)).isoformat()
    code, out = await cli("audit", "--since", since, "--project", story["project"])
    assert code == 0
    every = json.loads(out)
    # The show the scenario made is a record too (reads are audited), a success.
    reads = [r for r in every if r["action"] == "read"]
    assert [(r["outcome"], r["reason"]["reasonCode"]) for r in reads] == [("success", "200")]
    assert reads[0]["target"] == {
        "typeURI": "service/storage/block/volumes/volume",
        "id": story["vid"],
    }
    found = [r for r in every if r["action"] != "read"]
    assert [r["action"] for r in found] == [
        "create",
        "update/os-extend",
        "update/os-attach",
        "update/os-set_bootable",
        "update/os-detach",
        "delete",
    ]
    statuses = story["statuses"]
    expected_codes = [statuses[k] for k in ("create", "os-extend", "os-attach")]
    expected_codes += [statuses[k] for k in ("os-set_bootable", "os-detach", "delete")]
    assert [int(r["reason"]["reasonCode"]) for r in found] == expected_codes
    for r in found:
        assert r["typeURI"] == "http://schemas.dmtf.org/cloud/audit/1.0/event"
        assert r["eventType"] == "activity"
        assert r["outcome"] == "success"
        assert r["reason"]["reasonType"] == "HTTP"
        assert r["initiator"]["typeURI"] == "service/security/account/user"
        assert r["initiator"]["id"] == "alice"
        assert r["initiator"]["project_id"] == story["project"]
        assert r["initiator"]["host"]["address"] == "127.0.0.1"
        assert r["target"] == {
            "typeURI": "service/storage/block/volumes/volume",
            "id": story["vid"],
        }
        assert r["observer"] == {"id": "target", "name": "cinderblock"}
        assert (
            r["requestPath"].endswith(f"/volumes/{story['vid']}")
            or r["requestPath"].endswith("/volumes")
            or r["requestPath"].endswith("/action")
        )
        assert datetime.strptime(r["eventTime"], "%Y-%m-%dT%H:%M:%S.%f%z")
        uuid.UUID(r["id"])
    extend = found[1]
    assert extend["initiator"]["request_id"] == story["ids"]["os-extend"]
    assert extend["initiator"]["global_request_id"] == GLOBAL_ID
    outcome = next(a for a in extend["attachments"] if a["name"] == "async_outcome")
    assert [o["event"] for o in outcome["content"]] == [
        "Volume.Extended",
        "ProjectQuota.ReservationCommitted",
    ]
    assert {o["actor"] for o in outcome["content"]} == {"saga:extend"}
    assert {o["causation_id"] for o in outcome["content"]} == {f"{story['vid']}:3"}
    assert len({r["id"] for r in found}) == 6

    code, out = await cli(
        "audit", "--since", since, "--project", story["project"], "--format", "jsonl"
    )
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == every
    later = (datetime.now().astimezone() + timedelta(hours=1)).isoformat()
    _, out = await cli("audit", "--since", later, "--project", story["project"])
    assert json.loads(out) == []


async def test_history_interleaves_the_volumes_snapshots(system: System, cli: Any) -> None:
    c = system.client.as_(project_id=uuid.uuid4().hex)
    vid = (await c.create_volume(1))["id"]
    await system.until_status(vid, "available")
    reply = await c.request("POST", "/snapshots", body={"snapshot": {"volume_id": vid}})
    assert reply.status == 202, reply.text
    sid = reply.json["snapshot"]["id"]

    async def snapshot_ready() -> bool:
        shown = await c.request("GET", f"/snapshots/{sid}")
        return shown.status == 200 and shown.json["snapshot"]["status"] == "available"

    await system.projected.until(snapshot_ready)
    code, out = await cli("history", vid, "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    marked = [(r["aggregate"], r["event"]) for r in rows]
    assert ("volume", "Volume.SnapshotTaken") in marked
    snapshot_rows = [r for r in rows if r["aggregate"] == f"snapshot {sid}"]
    assert [r["event"] for r in snapshot_rows] == ["Snapshot.Created", "Snapshot.CreateCompleted"]
    assert snapshot_rows[-1]["changes"]["status"]["after"] == "available"
    times = [r["time"] for r in rows]
    assert times == sorted(times)
    _, table = await cli("history", vid)
    assert f"[snapshot {sid}] Snapshot.CreateCompleted" in table
