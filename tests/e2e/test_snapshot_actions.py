"""Snapshot admin actions (`POST /snapshots/{id}/action`): os-reset_status sets any of
Cinder's snapshot statuses; os-force_delete deletes whatever the status, and a snapshot
force-deleted while its copy is still being made leaves no copy behind."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import System
from tests.helpers.apiref import SAMPLES, require_samples
from tests.helpers.cinder import snapshot_of
from tests.helpers.client import CinderClient


async def _snapshot(system: System) -> tuple[CinderClient, dict[str, Any], dict[str, Any]]:
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1)
    volume = await system.until_status(created["id"], "available")
    return client, volume, await snapshot_of(system, client, volume["id"])


async def _until_snapshot(
    system: System, client: CinderClient, snapshot_id: str, status: str | None
) -> None:
    async def check() -> bool | None:
        reply = await client.request("GET", f"/snapshots/{snapshot_id}")
        if status is None:
            return True if reply.status == 404 else None
        return True if reply.json["snapshot"]["status"] == status else None

    await system.projected.until(check)


async def _quota_in_use(client: CinderClient) -> dict[str, int]:
    reply = await client.request("GET", f"/os-quota-sets/{client.project_id}?usage=true")
    sets = reply.json["quota_set"]
    return {k: sets[k]["in_use"] for k in ("snapshots", "gigabytes")}


async def test_reset_status_sets_any_cinder_status(system: System) -> None:
    client, _, snap = await _snapshot(system)
    sid = snap["id"]
    reply = await client.request(
        "POST", f"/snapshots/{sid}/action", body={"os-reset_status": {"status": "ERROR"}}
    )
    assert (reply.status, reply.text) == (202, "")
    shown = await client.request("GET", f"/snapshots/{sid}")
    assert shown.json["snapshot"]["status"] == "error"
    reply = await client.request(
        "POST", f"/snapshots/{sid}/action", body={"os-reset_status": {"status": "backing-up"}}
    )
    assert reply.status == 202
    shown = await client.request("GET", f"/snapshots/{sid}")
    assert shown.json["snapshot"]["status"] == "backing-up"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"os-reset_status": {"status": "bogus"}}, "Snapshot status: bogus is invalid"),
        ({"os-reset_status": {"status": ""}}, "Snapshot status:  is invalid"),
        ({"os-reset_status": {}}, "'status' is a required property"),
        ({"os-reset_status": {"status": 1}}, "is not of type 'string'"),
        ({"os-reset_status": {"status": "error", "x": 1}}, "'x' was unexpected"),
        ({"os-reset_status": None}, "os-reset_status"),
        ({"os-nope": {}}, "There is no such action: os-nope"),
        ({}, "Malformed request body"),
    ],
)
async def test_bad_bodies_are_400_and_change_nothing(
    system: System, body: dict[str, Any], fragment: str
) -> None:
    client, _, snap = await _snapshot(system)
    reply = await client.request("POST", f"/snapshots/{snap['id']}/action", body=body)
    assert reply.status == 400, reply.text
    assert fragment in reply.json["badRequest"]["message"]
    shown = await client.request("GET", f"/snapshots/{snap['id']}")
    assert shown.json["snapshot"]["status"] == "available"


async def test_actions_are_admin_only_and_scoped(system: System) -> None:
    client, _, snap = await _snapshot(system)
    member = client.as_(roles="member,reader")
    for body in ({"os-reset_status": {"status": "error"}}, {"os-force_delete": {}}):
        reply = await member.request("POST", f"/snapshots/{snap['id']}/action", body=body)
        assert reply.status == 403, reply.text
    stranger = system.client.as_(project_id=uuid.uuid4().hex, roles="member,reader")
    reply = await stranger.request(
        "POST", f"/snapshots/{snap['id']}/action", body={"os-force_delete": {}}
    )
    assert reply.status == 404
    missing = await client.request(
        "POST", f"/snapshots/{uuid.uuid4()}/action", body={"os-force_delete": {}}
    )
    assert missing.status == 404


async def test_force_delete_takes_a_snapshot_in_any_status(system: System) -> None:
    client, volume, snap = await _snapshot(system)
    sid = snap["id"]
    assert await _quota_in_use(client) == {"snapshots": 1, "gigabytes": 2}
    reset = {"os-reset_status": {"status": "error_deleting"}}
    assert (await client.request("POST", f"/snapshots/{sid}/action", body=reset)).status == 202
    plain = await client.request("DELETE", f"/snapshots/{sid}")
    assert plain.status == 400  # a plain delete keeps Cinder's status rule
    reply = await client.request("POST", f"/snapshots/{sid}/action", body={"os-force_delete": {}})
    assert (reply.status, reply.text) == (202, "")
    await _until_snapshot(system, client, sid, None)
    path = system.driver.snapshot_path(sid, volume["os-vol-host-attr:host"])
    assert not await asyncio.to_thread(path.exists)
    assert await _quota_in_use(client) == {"snapshots": 0, "gigabytes": 1}


async def test_force_delete_while_the_copy_is_made_leaves_no_copy(system: System) -> None:
    """In one process the driver's per-snapshot lock already orders the delete after the
    copy; across processes the create saga removes a copy it made for a snapshot that was
    deleted meanwhile. Either way: no copy left, quota back."""
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1)
    volume = await system.until_status(created["id"], "available")
    system.faults("snapshot=delay:1")
    try:
        reply = await client.request(
            "POST", "/snapshots", body={"snapshot": {"volume_id": volume["id"]}}
        )
        assert reply.status == 202
        sid = reply.json["snapshot"]["id"]
        forced = await client.request(
            "POST", f"/snapshots/{sid}/action", body={"os-force_delete": {}}
        )
        assert forced.status == 202
        await _until_snapshot(system, client, sid, None)
    finally:
        system.faults("")
    path = system.driver.snapshot_path(sid, volume["os-vol-host-attr:host"])

    async def copy_gone() -> bool | None:
        return True if not await asyncio.to_thread(path.exists) else None

    await system.projected.until(copy_gone)
    assert await _quota_in_use(client) == {"snapshots": 0, "gigabytes": 1}


@pytest.mark.parametrize(
    "name", ["snapshot-force-delete-request.json", "snapshot-status-reset-request.json"]
)
async def test_api_ref_snapshot_action_samples_are_accepted(system: System, name: str) -> None:
    require_samples()
    client, _, snap = await _snapshot(system)
    raw = (SAMPLES / name).read_bytes()
    reply = await client.request(
        "POST",
        f"/snapshots/{snap['id']}/action",
        raw=raw,
        headers={"Content-Type": "application/json"},
    )
    assert (reply.status, reply.text) == (202, "")
