"""The attachments API as Nova drives it (3.44): reserve, connect, complete, delete; sharing
rows and statuses with the legacy actions."""

from __future__ import annotations

import json
import uuid

from tests.e2e.conftest import System
from tests.helpers.apiref import SAMPLES, require_samples


async def test_nova_attach_flow(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex, version="3.44")
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    server = str(uuid.uuid4())
    reply = await client.request(
        "POST", "/attachments", body={"attachment": {"volume_uuid": vid, "instance_uuid": server}}
    )
    assert reply.status == 200, reply.text
    attachment = reply.json["attachment"]
    assert (attachment["status"], attachment["instance"]) == ("reserved", server)
    assert set(attachment) == {
        "id",
        "status",
        "instance",
        "volume_id",
        "attached_at",
        "detached_at",
        "attach_mode",
        "connection_info",
    }
    assert (await client.volume(vid) or {})["status"] == "reserved"
    aid = attachment["id"]
    connector = {"host": "compute-1", "mountpoint": "/dev/vdb", "initiator": "iqn.x"}
    updated = await client.request(
        "PUT", f"/attachments/{aid}", body={"attachment": {"connector": connector}}
    )
    assert updated.status == 200
    info = updated.json["attachment"]["connection_info"]
    assert info["driver_volume_type"] == "local"
    assert updated.json["attachment"]["status"] == "attaching"
    done = await client.request("POST", f"/attachments/{aid}/action", body={"os-complete": None})
    assert (done.status, done.text) == (204, "")
    volume = await client.volume(vid)
    assert volume is not None
    assert volume["status"] == "in-use"
    assert [a["attachment_id"] for a in volume["attachments"]] == [aid]
    listed = await client.request("GET", f"/attachments?volume_id={vid}")
    assert [a["id"] for a in listed.json["attachments"]] == [aid]
    gone = await client.request("DELETE", f"/attachments/{aid}")
    assert (gone.status, gone.json) == (200, {"attachments": []})
    assert (await client.volume(vid) or {})["status"] == "available"


async def test_attachments_need_327_and_complete_344(system: System) -> None:
    old = system.client.as_(version="3.26")
    assert (await old.request("GET", "/attachments")).status == 404
    v327 = system.client.as_(project_id=uuid.uuid4().hex, version="3.27")
    created = await v327.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    made = await v327.request("POST", "/attachments", body={"attachment": {"volume_uuid": vid}})
    assert made.status == 200
    early = await v327.request(
        "POST", f"/attachments/{made.json['attachment']['id']}/action", body={"os-complete": None}
    )
    assert early.status == 404
    missing = await v327.request("GET", f"/attachments/{uuid.uuid4()}")
    assert missing.status == 404


async def test_attachment_samples(system: System) -> None:
    require_samples()
    client = system.client.as_(project_id=uuid.uuid4().hex, version="3.44")
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    body = json.loads((SAMPLES / "attachment-create-request.json").read_text())
    body["attachment"]["volume_uuid"] = vid
    made = await client.request("POST", "/attachments", body=body)
    assert made.status == 200, made.text
    expected = json.loads((SAMPLES / "attachment-create-response.json").read_text())
    assert set(made.json["attachment"]) == set(expected["attachment"])
    aid = made.json["attachment"]["id"]
    update = json.loads((SAMPLES / "attachment-update-request.json").read_text())
    assert (await client.request("PUT", f"/attachments/{aid}", body=update)).status == 200
    complete = json.loads((SAMPLES / "attachment-complete.json").read_text())
    assert (await client.request("POST", f"/attachments/{aid}/action", body=complete)).status == 204


def nova_translates(attachment: dict) -> dict:
    """What ``nova.volume.cinder._translate_attachment_ref`` makes of Cinder's flat
    connection info before libvirt reads ``connection_info['data']['device_path']``."""
    flat = dict(attachment["connection_info"])
    flat.pop("attachment_id", None)
    return {"driver_volume_type": flat.pop("driver_volume_type", None), "data": flat}


async def test_connection_info_is_flat_as_cinder_answers_it(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex, version="3.54")
    created = await client.create_volume(1)
    volume = await system.until_status(created["id"], "available")
    vid, host = volume["id"], volume["os-vol-host-attr:host"]
    path = str(system.driver.volume_path(vid, host))
    connector = {"host": "compute-1", "mountpoint": "/dev/vdb", "initiator": "iqn.x"}
    server = str(uuid.uuid4())

    # create with a connector, as Nova's live migration does for the destination
    made = await client.request(
        "POST",
        "/attachments",
        body={"attachment": {"volume_uuid": vid, "instance_uuid": server, "connector": connector}},
    )
    assert made.status == 200, made.text
    aid = made.json["attachment"]["id"]
    expected = {
        "driver_volume_type": "local",
        "device_path": path,
        "access_mode": "rw",
        "qos_specs": None,
        "encrypted": False,
        "discard": True,
        "enforce_multipath": False,
        "attachment_id": aid,
    }
    assert made.json["attachment"]["connection_info"] == expected
    shown = await client.request("GET", f"/attachments/{aid}")
    assert shown.json["attachment"]["connection_info"] == expected
    listed = await client.request("GET", f"/attachments/detail?volume_id={vid}")
    assert [a["connection_info"] for a in listed.json["attachments"]] == [expected]
    translated = nova_translates(shown.json["attachment"])
    assert (translated["driver_volume_type"], translated["data"]["device_path"]) == ("local", path)

    gone = await client.request("DELETE", f"/attachments/{aid}")
    assert gone.status == 200, gone.text
    # reserve without a connector (empty info), then update with one, read-only
    ro = await client.request(
        "POST",
        "/attachments",
        body={"attachment": {"volume_uuid": vid, "instance_uuid": server, "mode": "ro"}},
    )
    assert ro.status == 200, ro.text
    assert ro.json["attachment"]["connection_info"] == {}
    rid = ro.json["attachment"]["id"]
    multipath = connector | {"enforce_multipath": True}
    updated = await client.request(
        "PUT", f"/attachments/{rid}", body={"attachment": {"connector": multipath}}
    )
    assert updated.status == 200, updated.text
    info = updated.json["attachment"]["connection_info"]
    ro_expected = expected | {"access_mode": "ro", "enforce_multipath": True, "attachment_id": rid}
    assert info == ro_expected
    again = await client.request("GET", f"/attachments/{rid}")
    assert again.json["attachment"]["connection_info"] == ro_expected

    # the legacy os-initialize_connection answer stays nested, as Cinder's is
    legacy = await client.action(vid, {"os-initialize_connection": {"connector": connector}})
    assert legacy.status == 200, legacy.text
    nested = legacy.json["connection_info"]
    assert (nested["driver_volume_type"], nested["data"]["device_path"]) == ("local", path)
    assert "device_path" not in nested
