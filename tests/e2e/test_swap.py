"""Nova's swap volume over HTTP: os-migrate_volume_completion with neither volume migrating
detaches the old volume and gives the new one the instance's attachment, both in one append;
``error`` moves nothing (spec §3.13, issue 9 item 5)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.e2e.conftest import System
from tests.helpers.cinder import rows_agree
from tests.helpers.client import CinderClient

INSTANCE_HOST = "compute-1"


async def events_of(system: System, vid: str) -> list[str]:
    rows = await system.pool.fetch(
        "SELECT topic FROM events WHERE originator_id = $1 ORDER BY originator_version",
        uuid.UUID(vid),
    )
    return [r["topic"].rpartition(".")[2] for r in rows]


async def legacy_attached(system: System, c: CinderClient, server: str) -> str:
    """A volume attached to ``server`` the legacy way, then Nova's swap began detaching it."""
    vid = (await c.create_volume(1))["id"]
    await system.until_status(vid, "available")
    assert (await c.action(vid, {"os-reserve": None})).status == 202
    attach = {
        "os-attach": {
            "instance_uuid": server,
            "host_name": INSTANCE_HOST,
            "mountpoint": "/dev/vdb",
            "mode": "rw",
        }
    }
    assert (await c.action(vid, attach)).status == 202
    assert (await c.action(vid, {"os-begin_detaching": None})).status == 202
    return vid


async def complete(c: CinderClient, old: str, new: str, **extra: Any) -> Any:
    body = {"os-migrate_volume_completion": {"new_volume": new, **extra}}
    return await c.action(old, body)


async def test_legacy_swap_moves_the_attachment(system: System) -> None:
    c = system.client.as_(project_id=uuid.uuid4().hex)
    server = str(uuid.uuid4())
    old = await legacy_attached(system, c, server)
    new = (await c.create_volume(1))["id"]
    await system.until_status(new, "available")
    assert (await c.action(new, {"os-reserve": None})).status == 202  # Nova reserves it
    before = await c.volume(old)
    assert before is not None
    [old_attachment] = before["attachments"]

    reply = await complete(c, old, new)

    assert (reply.status, reply.json) == (200, {"save_volume_id": new})
    detached = await c.volume(old)
    assert detached is not None
    assert (detached["status"], detached["attachments"]) == ("available", [])
    assert detached["metadata"] == {"readonly": "False"}
    swapped = await c.volume(new)
    assert swapped is not None
    assert swapped["status"] == "in-use"
    [att] = swapped["attachments"]
    assert (att["server_id"], att["host_name"], att["device"], att["volume_id"]) == (
        server,
        INSTANCE_HOST,
        "/dev/vdb",
        new,
    )
    assert att["attachment_id"] != old_attachment["attachment_id"]
    assert swapped["metadata"] == {"readonly": "False", "attached_mode": "rw"}
    rows = await system.pool.fetch(
        "SELECT volume_id, deleted, attach_status, instance_uuid, attached_host, mountpoint, "
        "attach_mode FROM attachments WHERE volume_id = ANY($1::uuid[]) ORDER BY volume_id",
        [uuid.UUID(old), uuid.UUID(new)],
    )
    by_volume = {str(r["volume_id"]): dict(r) for r in rows}
    assert (by_volume[old]["deleted"], by_volume[old]["attach_status"]) == (True, "detached")
    moved = by_volume[new]
    assert (moved["deleted"], moved["attach_status"], moved["attach_mode"]) == (
        False,
        "attached",
        "rw",
    )
    assert (moved["instance_uuid"], moved["attached_host"], moved["mountpoint"]) == (
        server,
        INSTANCE_HOST,
        "/dev/vdb",
    )
    # both volumes' events come from the one request, appended together
    assert (await events_of(system, old))[-1] == "Detached"
    assert (await events_of(system, new))[-1] == "Attached"
    together = await system.pool.fetchval(
        "SELECT count(DISTINCT tx_id) FROM events WHERE (originator_id = $1 AND "
        "topic LIKE '%.Detached') OR (originator_id = $2 AND topic LIKE '%.Attached')",
        uuid.UUID(old),
        uuid.UUID(new),
    )
    assert together == 1
    await rows_agree(system, old)
    await rows_agree(system, new)


async def test_swap_to_a_volume_reserved_through_the_attachments_api(system: System) -> None:
    """Cinder finds the new volume's attachment of that instance and only sets the volume
    in-use: that row is the one Nova completes (it never calls the completion itself in
    this flow; a direct caller gets Cinder's answer)."""
    c = system.client.as_(project_id=uuid.uuid4().hex, version="3.44")
    server = str(uuid.uuid4())
    old = await legacy_attached(system, c.as_(version="3.0"), server)
    new = (await c.create_volume(1))["id"]
    await system.until_status(new, "available")
    reply = await c.request(
        "POST", "/attachments", body={"attachment": {"volume_uuid": new, "instance_uuid": server}}
    )
    assert reply.status == 200, reply.text
    reserved = reply.json["attachment"]["id"]

    done = await complete(c, old, new)

    assert (done.status, done.json) == (200, {"save_volume_id": new})
    assert (await c.volume(old) or {})["status"] == "available"
    swapped = await c.volume(new)
    assert swapped is not None
    assert swapped["status"] == "in-use"
    listed = await c.request("GET", f"/attachments?volume_id={new}")
    assert [a["id"] for a in listed.json["attachments"]] == [reserved]
    await rows_agree(system, new)


async def test_failed_swap_moves_nothing(system: System) -> None:
    c = system.client.as_(project_id=uuid.uuid4().hex)
    server = str(uuid.uuid4())
    old = await legacy_attached(system, c, server)
    new = (await c.create_volume(1))["id"]
    await system.until_status(new, "available")
    assert (await c.action(new, {"os-reserve": None})).status == 202
    before = (await events_of(system, old), await events_of(system, new))

    reply = await complete(c, old, new, error=True)

    assert (reply.status, reply.json) == (200, {"save_volume_id": new})
    assert (await events_of(system, old), await events_of(system, new)) == before
    assert (await c.volume(old) or {})["status"] == "detaching"
    assert (await c.volume(new) or {})["status"] == "attaching"


async def test_refused_swap_appends_nothing(system: System) -> None:
    """A read-only new volume refuses Cinder's read-write attach: 400, and the old volume
    keeps its attachment (Cinder would have detached it already)."""
    c = system.client.as_(project_id=uuid.uuid4().hex)
    old = await legacy_attached(system, c, str(uuid.uuid4()))
    new = (await c.create_volume(1))["id"]
    await system.until_status(new, "available")
    flag = {"os-update_readonly_flag": {"readonly": True}}
    assert (await c.action(new, flag)).status == 202
    before = (await events_of(system, old), await events_of(system, new))

    reply = await complete(c, old, new)

    assert reply.status == 400
    assert reply.json["badRequest"]["message"] == (
        f"Invalid input received: Invalid attaching mode 'rw' for volume {new}."
    )
    assert (await events_of(system, old), await events_of(system, new)) == before
    old_volume = await c.volume(old)
    assert old_volume is not None
    assert (old_volume["status"], len(old_volume["attachments"])) == ("detaching", 1)


async def test_completion_of_an_unknown_new_volume_is_404(system: System) -> None:
    c = system.client.as_(project_id=uuid.uuid4().hex)
    old = await legacy_attached(system, c, str(uuid.uuid4()))
    missing = str(uuid.uuid4())

    reply = await complete(c, old, missing)

    assert reply.status == 404
    assert reply.json["itemNotFound"]["message"] == f"Volume {missing} could not be found."
