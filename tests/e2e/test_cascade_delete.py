"""DELETE /volumes/{id}?cascade=true (spec §2.4): the volume and its snapshots go together,
their files leave the pool, their quota comes back; refusals change nothing; a backend
failure ends in compensation (error_deleting)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.e2e.conftest import System
from tests.helpers.cinder import snapshot_of
from tests.helpers.client import CinderClient

REFUSED = (
    "Invalid volume: Volume status must be available or error or error_restoring or "
    "error_extending or error_managing and must not be migrating, attached, belong to a "
    "group, have snapshots, awaiting a transfer, or be disassociated from snapshots after "
    "volume transfer."
)


async def volume_with_snapshots(
    system: System, count: int
) -> tuple[CinderClient, dict[str, Any], list[dict[str, Any]]]:
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1)
    volume = await system.until_status(created["id"], "available")
    snaps = [await snapshot_of(system, client, volume["id"]) for _ in range(count)]
    return client, volume, snaps


async def usage(client: CinderClient) -> dict[str, int]:
    reply = await client.request("GET", f"/os-quota-sets/{client.project_id}?usage=true")
    quota = reply.json["quota_set"]
    keys = ("volumes", "snapshots", "gigabytes", "volumes___DEFAULT__", "snapshots___DEFAULT__")
    return {k: quota[k]["in_use"] + quota[k]["reserved"] for k in keys if k in quota}


async def snapshot_status(client: CinderClient, sid: str) -> str | None:
    reply = await client.request("GET", f"/snapshots/{sid}")
    return reply.json["snapshot"]["status"] if reply.status == 200 else None


async def until_snapshots(
    system: System, client: CinderClient, snaps: list[dict[str, Any]], status: str | None
) -> None:
    async def reached() -> bool:
        return all([await snapshot_status(client, s["id"]) == status for s in snaps])

    await system.projected.until(reached)


async def test_cascade_removes_volume_snapshots_files_and_quota(system: System) -> None:
    client, volume, snaps = await volume_with_snapshots(system, 2)
    vid, host = volume["id"], volume["os-vol-host-attr:host"]
    files = [system.driver.volume_path(vid, host)]
    files += [system.driver.snapshot_path(s["id"], host) for s in snaps]
    assert all(f.exists() for f in files)
    before = await usage(client)
    assert before["volumes"] == 1
    assert before["snapshots"] == 2
    assert before["gigabytes"] == 3

    plain = await client.request("DELETE", f"/volumes/{vid}")
    assert (plain.status, plain.json["badRequest"]["code"]) == (400, 400)
    reply = await client.request("DELETE", f"/volumes/{vid}?cascade=true")
    assert (reply.status, reply.text) == (202, "")
    for s in snaps:  # moved in the same append as the volume
        assert await snapshot_status(client, s["id"]) in ("deleting", None)

    await system.until_volume(vid, lambda v: v is None)
    await until_snapshots(system, client, snaps, None)
    assert not any(f.exists() for f in files)
    after = await usage(client)
    assert set(after.values()) == {0}, after
    listed = await client.request("GET", "/snapshots")
    assert listed.json["snapshots"] == []


async def test_cascade_refused_while_a_snapshot_is_creating(system: System) -> None:
    client, volume, _ = await volume_with_snapshots(system, 1)
    vid = volume["id"]
    system.faults("snapshot=delay:5")
    try:
        made = await client.request("POST", "/snapshots", body={"snapshot": {"volume_id": vid}})
        assert made.status == 202
        busy = made.json["snapshot"]
        refused = await client.request("DELETE", f"/volumes/{vid}?cascade=true")
        assert (refused.status, refused.json["badRequest"]["message"]) == (400, REFUSED)
        shown = await client.volume(vid)
        assert shown is not None
        assert shown["status"] == "available"
    finally:
        system.faults("")
    await until_snapshots(system, client, [busy], "available")


async def test_cascade_refused_for_error_deleting_unless_forced(system: System) -> None:
    client, volume, snaps = await volume_with_snapshots(system, 2)
    vid = volume["id"]
    system.faults("delete_snapshot=fail")
    try:
        assert (await client.request("DELETE", f"/snapshots/{snaps[0]['id']}")).status == 202
        await until_snapshots(system, client, snaps[:1], "error_deleting")
    finally:
        system.faults("")
    refused = await client.request("DELETE", f"/volumes/{vid}?cascade=true")
    assert (refused.status, refused.json["badRequest"]["message"]) == (400, REFUSED)
    assert await snapshot_status(client, snaps[1]["id"]) == "available"  # untouched
    old = client.as_(version="3.22")  # force is ignored before 3.23
    assert (await old.request("DELETE", f"/volumes/{vid}?cascade=true&force=true")).status == 400
    member = client.as_(version="3.23", roles="member")
    denied = await member.request("DELETE", f"/volumes/{vid}?cascade=true&force=true")
    assert denied.json["forbidden"]["message"] == (
        "Policy doesn't allow volume:force_delete to be performed."
    )
    forced = await client.as_(version="3.23").request(
        "DELETE", f"/volumes/{vid}?cascade=True&force=yes"
    )
    assert forced.status == 202
    await system.until_volume(vid, lambda v: v is None)
    await until_snapshots(system, client, snaps, None)
    assert set((await usage(client)).values()) == {0}


async def test_bad_query_values_and_personas(system: System) -> None:
    client, volume, _ = await volume_with_snapshots(system, 1)
    vid = volume["id"]
    nowhere = str(uuid.uuid4())
    for query, name, value in [
        ("cascade=maybe", "cascade", "maybe"),
        ("cascade=", "cascade", ""),
        ("cascade=true&force=2", "force", "2"),
    ]:
        for target in (vid, nowhere):  # checked before the volume is looked up
            reply = await client.as_(version="3.23").request("DELETE", f"/volumes/{target}?{query}")
            assert (reply.status, reply.json["badRequest"]["message"]) == (
                400,
                f"Value '{value}' for '{name}' is not a boolean.",
            ), query
    ignored = await client.as_(version="3.22").request("DELETE", f"/volumes/{nowhere}?force=2")
    assert ignored.status == 404
    reader = client.as_(roles="reader")
    denied = await reader.request("DELETE", f"/volumes/{vid}?cascade=1")
    assert denied.json["forbidden"]["message"] == (
        "Policy doesn't allow volume:delete to be performed."
    )
    stranger = client.as_(project_id=uuid.uuid4().hex, roles="member")
    assert (await stranger.request("DELETE", f"/volumes/{vid}?cascade=1")).status == 404
    shown = await client.volume(vid)
    assert shown is not None
    assert shown["status"] == "available"


async def test_backend_failure_compensates(system: System) -> None:
    client, volume, snaps = await volume_with_snapshots(system, 2)
    vid, host = volume["id"], volume["os-vol-host-attr:host"]
    system.faults("delete_snapshot=fail")
    try:
        assert (await client.request("DELETE", f"/volumes/{vid}?cascade=true")).status == 202
        await system.until_status(vid, "error_deleting")
        await until_snapshots(system, client, snaps, "error_deleting")
    finally:
        system.faults("")
    assert system.driver.volume_path(vid, host).exists()
    assert (await usage(client))["snapshots"] == 2  # nothing was given back

    client2, volume2, snaps2 = await volume_with_snapshots(system, 2)
    vid2, host2 = volume2["id"], volume2["os-vol-host-attr:host"]
    system.faults("delete=fail")
    try:
        assert (await client2.request("DELETE", f"/volumes/{vid2}?cascade=true")).status == 202
        await system.until_status(vid2, "error_deleting")
    finally:
        system.faults("")
    await until_snapshots(system, client2, snaps2, None)  # these went before the failure
    assert not any(system.driver.snapshot_path(s["id"], host2).exists() for s in snaps2)
    assert system.driver.volume_path(vid2, host2).exists()
    left = await usage(client2)
    assert (left["volumes"], left["snapshots"], left["gigabytes"]) == (1, 0, 1)
    # the volume no longer has snapshots: a plain forced delete finishes it
    again = await client2.as_(version="3.23").request("DELETE", f"/volumes/{vid2}?force=true")
    assert again.status == 202
    await system.until_volume(vid2, lambda v: v is None)
    assert set((await usage(client2)).values()) == {0}
