"""Snapshots hold real data; revert (3.40+) writes it back into the volume."""

from __future__ import annotations

import asyncio
import uuid

from tests.e2e.conftest import System
from tests.helpers.cinder import snapshot_of
from tests.helpers.files import read_at, write_at


async def test_snapshot_then_revert_restores_the_bytes(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1)
    volume = await system.until_status(created["id"], "available")
    vid = volume["id"]
    path = system.driver.volume_path(vid, volume["os-vol-host-attr:host"])
    await asyncio.to_thread(write_at, path, 4096, b"before the snapshot")
    snap = await snapshot_of(system, client, vid, name="snap-1", metadata={"k": "v"})
    assert (snap["size"], snap["name"], snap["metadata"]) == (1, "snap-1", {"k": "v"})
    assert snap["os-extended-snapshot-attributes:progress"] == "100%"
    await asyncio.to_thread(write_at, path, 4096, b"AFTER the snapshot!")

    old = await client.action(vid, {"revert": {"snapshot_id": snap["id"]}})
    assert old.status == 404  # revert needs 3.40
    v340 = client.as_(version="3.40")
    reply = await v340.action(vid, {"revert": {"snapshot_id": snap["id"], "extra": 1}})
    assert (reply.status, reply.text) == (202, "")
    during = await client.volume(vid)
    assert during is not None
    assert during["status"] in ("reverting", "available")
    await system.until_status(vid, "available")
    assert await asyncio.to_thread(read_at, path, 4096, 19) == b"before the snapshot"
    again = await client.request("GET", f"/snapshots/{snap['id']}")
    assert again.json["snapshot"]["status"] == "available"


async def test_revert_rules(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex, version="3.40")
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    none = await client.action(vid, {"revert": {"snapshot_id": str(uuid.uuid4())}})
    assert none.status == 400
    assert "doesn't have any snapshots" in none.json["badRequest"]["message"]
    first = await snapshot_of(system, client, vid)
    second = await snapshot_of(system, client, vid)
    not_latest = await client.action(vid, {"revert": {"snapshot_id": first["id"]}})
    assert not_latest.status == 400
    null = await client.action(vid, {"revert": None})
    assert null.status == 400
    assert (await client.action(vid, {"os-extend": {"new_size": 2}})).status == 202
    await system.until_volume(vid, lambda v: v is not None and v["size"] == 2)
    grown = await client.action(vid, {"revert": {"snapshot_id": second["id"]}})
    assert grown.status == 400  # the volume was extended after the snapshot


async def test_snapshots_block_volume_delete_until_removed(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    snap = await snapshot_of(system, client, vid, name="keep")
    refused = await client.request("DELETE", f"/volumes/{vid}")
    assert refused.status == 400
    updated = await client.request(
        "PUT", f"/snapshots/{snap['id']}", body={"snapshot": {"name": "renamed"}}
    )
    assert (updated.status, updated.json["snapshot"]["name"]) == (200, "renamed")
    listed = await client.request("GET", "/snapshots/detail")
    assert [s["id"] for s in listed.json["snapshots"]] == [snap["id"]]
    gone = await client.request("DELETE", f"/snapshots/{snap['id']}")
    assert gone.status == 202

    async def removed() -> bool:
        shown = await client.request("GET", f"/snapshots/{snap['id']}")
        return shown.status == 404

    await system.projected.until(removed)
    assert (await client.request("DELETE", f"/volumes/{vid}")).status == 202


async def test_snapshot_request_rules(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex)
    missing = await client.request(
        "POST", "/snapshots", body={"snapshot": {"volume_id": str(uuid.uuid4())}}
    )
    assert missing.status == 404
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    for bad in (
        {},
        {"snapshot": {}},
        {"snapshot": {"volume_id": vid, "colour": 1}},
        {"snapshot": {"volume_id": "nope"}},
    ):
        assert (await client.request("POST", "/snapshots", body=bad)).status == 400, bad
    forced_false = await client.as_(version="3.66").request(
        "POST", "/snapshots", body={"snapshot": {"volume_id": vid, "force": False}}
    )
    assert forced_false.status == 400
    for _ in range(10):
        await snapshot_of(system, client, vid)
    over = await client.request("POST", "/snapshots", body={"snapshot": {"volume_id": vid}})
    assert over.status == 413
    assert over.json["overLimit"]["message"].startswith("SnapshotLimitExceeded")
