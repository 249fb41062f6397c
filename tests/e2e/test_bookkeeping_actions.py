"""The attachment-bookkeeping and admin actions over HTTP, as Nova and operators use them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.e2e.conftest import System

INSTANCE = "4b0c3a7e-8f0c-4a57-9a4e-3d2a6c1e9f10"


async def status_of(system: System, vid: str) -> tuple[str, str | None]:
    volume = await system.client.volume(vid)
    assert volume is not None
    return volume["status"], volume.get("migration_status")


async def test_reserve_attach_detach_cycle(system: System) -> None:
    c = system.client
    vid = (await system.available_volume(1))["id"]
    assert (await c.action(vid, {"os-reserve": None})).status == 202
    assert (await status_of(system, vid))[0] == "attaching"
    again = await c.action(vid, {"os-reserve": {}})
    assert again.status == 400
    assert again.json["badRequest"]["message"] == (
        "Invalid volume: Volume status must be available to reserve, but the status is attaching."
    )
    attach = {"os-attach": {"instance_uuid": INSTANCE, "mountpoint": "/dev/vdb", "mode": "rw"}}
    assert (await c.action(vid, attach)).status == 202
    volume = await c.volume(vid)
    assert volume is not None
    assert volume["status"] == "in-use"
    [att] = volume["attachments"]
    assert set(att) == {
        "id",
        "attachment_id",
        "volume_id",
        "server_id",
        "host_name",
        "device",
        "attached_at",
    }
    assert (att["id"], att["server_id"], att["device"]) == (vid, INSTANCE, "/dev/vdb")
    assert volume["metadata"] == {"readonly": "False", "attached_mode": "rw"}
    assert (await c.action(vid, attach)).status == 202  # same instance again: idempotent
    other = {"os-attach": {"instance_uuid": str(uuid.uuid4()), "mountpoint": "/dev/vdc"}}
    refused = await c.action(vid, other)
    assert refused.status == 400
    assert "multiple attachments are not enabled" in refused.json["badRequest"]["message"]

    assert (await c.action(vid, {"os-begin_detaching": None})).status == 202
    assert (await status_of(system, vid))[0] == "detaching"
    assert (await c.action(vid, {"os-roll_detaching": None})).status == 202
    assert (await status_of(system, vid))[0] == "in-use"
    unknown = await c.action(vid, {"os-detach": {"attachment_id": str(uuid.uuid4())}})
    assert unknown.status == 409
    assert unknown.json["conflictingRequest"]["message"].startswith("ConflictNovaUsingAttachment")
    detach = await c.action(vid, {"os-detach": {"attachment_id": att["attachment_id"]}})
    assert (detach.status, detach.text) == (202, "")
    volume = await c.volume(vid)
    assert volume is not None
    assert (volume["status"], volume["attachments"]) == ("available", [])
    assert volume["metadata"] == {"readonly": "False"}
    row = await system.pool.fetchrow(
        "SELECT deleted, attach_status FROM attachments WHERE id = $1",
        uuid.UUID(att["attachment_id"]),
    )
    assert row is not None
    assert (row["deleted"], row["attach_status"]) == (True, "detached")


async def test_unreserve_and_roll_back_are_quiet_no_ops(system: System) -> None:
    vid = (await system.available_volume(1))["id"]
    before = await system.pool.fetchval(
        "SELECT count(*) FROM events WHERE originator_id = $1", uuid.UUID(vid)
    )
    for action in ("os-unreserve", "os-roll_detaching"):
        assert (await system.client.action(vid, {action: None})).status == 202
    begin = await system.client.action(vid, {"os-begin_detaching": None})
    assert begin.status == 400
    after = await system.pool.fetchval(
        "SELECT count(*) FROM events WHERE originator_id = $1", uuid.UUID(vid)
    )
    assert after == before


async def test_readonly_flag_governs_attach_mode_and_connection(system: System) -> None:
    c = system.client
    volume = await system.available_volume(1)
    vid = volume["id"]
    assert (await c.action(vid, {"os-update_readonly_flag": {"readonly": True}})).status == 202
    shown = await c.volume(vid)
    assert shown is not None
    assert shown["metadata"] == {"readonly": "True"}
    rw = await c.action(vid, {"os-attach": {"host_name": "Node_1 ", "mountpoint": "/mnt/x"}})
    assert rw.status == 400
    assert rw.json["badRequest"]["message"] == (
        f"Invalid input received: Invalid attaching mode 'rw' for volume {vid}."
    )
    ro = {"os-attach": {"host_name": "Node_1 ", "mountpoint": "/mnt/x", "mode": "ro"}}
    assert (await c.action(vid, ro)).status == 202
    attached = await c.volume(vid)
    assert attached is not None
    assert attached["attachments"][0]["host_name"] == "node-1"
    flag = await c.action(vid, {"os-update_readonly_flag": {"readonly": False}})
    assert flag.status == 400  # only while available
    conn = await c.action(vid, {"os-initialize_connection": {"connector": {"host": "node-1"}}})
    assert conn.status == 200
    info = conn.json["connection_info"]
    assert info["driver_volume_type"] == "local"
    assert info["data"]["access_mode"] == "ro"
    assert await asyncio.to_thread(Path(info["data"]["device_path"]).exists)
    assert (await c.action(vid, {"os-detach": {}})).status == 202
    assert (await status_of(system, vid))[0] == "available"


async def test_terminate_connection_unreserves(system: System) -> None:
    vid = (await system.available_volume(1))["id"]
    assert (await system.client.action(vid, {"os-reserve": None})).status == 202
    reply = await system.client.action(vid, {"os-terminate_connection": {"connector": None}})
    assert reply.status == 202
    assert (await status_of(system, vid))[0] == "available"
    missing = await system.client.action(vid, {"os-terminate_connection": {}})
    assert missing.status == 400


async def test_reset_status_rules(system: System) -> None:
    c = system.client
    vid = (await system.available_volume(1))["id"]
    ok = await c.action(vid, {"os-reset_status": {"status": "ERROR", "migration_status": "none"}})
    assert ok.status == 202
    assert await status_of(system, vid) == ("error", None)
    for bad in (
        {},
        {"status": "deleting"},
        {"status": "reverting"},
        {"attach_status": "bogus"},
        {"status": "in-use"},
        {"colour": "red"},
    ):
        reply = await c.action(vid, {"os-reset_status": bad})
        assert reply.status == 400, (bad, reply.text)
    assert (await c.action(vid, {"os-reset_status": {"status": "available"}})).status == 202
    attach = {"os-attach": {"instance_uuid": INSTANCE, "mountpoint": "/dev/vdb"}}
    assert (await c.action(vid, attach)).status == 202
    reset = {"os-reset_status": {"status": "error", "attach_status": "detached"}}
    assert (await c.action(vid, reset)).status == 202
    volume = await c.volume(vid)
    assert volume is not None
    assert (volume["status"], volume["attachments"]) == ("error", [])  # the status sticks
    member = c.as_(roles="member")
    denied = await member.request(
        "POST",
        "",
        url=f"{system.url}/v3/{member.project_id}/volumes/{vid}/action",
        body={"os-reset_status": {"status": "available"}},
    )
    assert denied.status == 404  # another project's volume is hidden, never 403


async def test_image_metadata_set_show_unset(system: System) -> None:
    c = system.client
    vid = (await system.available_volume(1))["id"]
    none = await c.action(vid, {"os-show_image_metadata": None})
    assert none.status == 404
    assert none.json["itemNotFound"]["message"] == (
        f"Glance metadata for volume/snapshot {vid} cannot be found."
    )
    first = await c.action(vid, {"os-set_image_metadata": {"metadata": {"os_distro": "fedora"}}})
    assert (first.status, first.json) == (200, {"metadata": {"os_distro": "fedora"}})
    second = await c.action(vid, {"os-set_image_metadata": {"metadata": {"min_ram": "512"}}})
    assert second.json == {"metadata": {"os_distro": "fedora", "min_ram": "512"}}
    shown = await c.action(vid, {"os-show_image_metadata": {}})
    assert shown.json == {"metadata": {"os_distro": "fedora", "min_ram": "512"}}
    volume = await c.volume(vid)
    assert volume is not None
    assert volume["volume_image_metadata"] == {"os_distro": "fedora", "min_ram": "512"}
    unset = await c.action(vid, {"os-unset_image_metadata": {"key": "os_distro"}})
    assert (unset.status, unset.text) == (200, "")
    assert "x-compute-request-id" not in unset.headers
    gone = await c.action(vid, {"os-unset_image_metadata": {"key": "os_distro"}})
    assert gone.status == 404
    bad_key = await c.action(vid, {"os-set_image_metadata": {"metadata": {"": "x"}}})
    assert bad_key.status == 400


async def test_force_delete(system: System) -> None:
    c = system.client
    vid = (await system.available_volume(1))["id"]
    attach = {"os-attach": {"instance_uuid": INSTANCE, "mountpoint": "/dev/vdb"}}
    assert (await c.action(vid, attach)).status == 202
    assert (await c.action(vid, {"os-force_delete": {}})).status == 400  # attached
    assert (await c.action(vid, {"os-detach": None})).status == 202
    assert (await c.action(vid, {"os-reset_status": {"status": "error_extending"}})).status == 202
    assert (await c.action(vid, {"os-force_delete": ""})).status == 202
    await system.until_volume(vid, lambda v: v is None)


async def test_maintenance_blocks_attach_and_connection(system: System) -> None:
    c = system.client
    vid = (await system.available_volume(1))["id"]
    assert (await c.action(vid, {"os-reset_status": {"status": "maintenance"}})).status == 202
    attach = {"os-attach": {"instance_uuid": INSTANCE, "mountpoint": "/dev/vdb"}}
    assert (await c.action(vid, attach)).status == 400
    conn = await c.action(vid, {"os-initialize_connection": {"connector": {}}})
    assert conn.status == 400
    no_connector = await c.action(vid, {"os-initialize_connection": {"connector": None}})
    assert no_connector.status == 400


async def test_unmanage_leaves_the_file_and_releases_quota(system: System) -> None:
    owner = system.client.as_(project_id=uuid.uuid4().hex)
    created = await owner.create_volume(3)
    volume = await system.until_status(created["id"], "available")
    path = system.driver.volume_path(volume["id"], volume["os-vol-host-attr:host"])
    reply = await owner.action(volume["id"], {"os-unmanage": None})
    assert (reply.status, reply.text) == (202, "")
    assert "x-compute-request-id" not in reply.headers
    await system.until_volume(volume["id"], lambda v: v is None)
    assert await asyncio.to_thread(path.exists)  # the data stays on the backend
    usage = await system.pool.fetchval(
        "SELECT count(*) FROM volumes WHERE project_id = $1 AND NOT deleted", owner.project_id
    )
    assert usage == 0
    # quota given back: ten more volumes fit in the default quota of ten
    for _ in range(10):
        await owner.create_volume(1)
