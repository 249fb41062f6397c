"""Volume-type encryption over HTTP: the admin API (Cinder's rules, faults and policy),
encrypted volumes (key id, header in the image, multiattach and unmanage refusals)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from cinderblock.drivers.encryption import LUKS1_HEADER, MAGIC
from tests.e2e.conftest import System
from tests.helpers.cinder import LUKS, encrypted_type, new_type


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(4096)


async def test_encryption_lifecycle(system: System) -> None:
    vtype = await new_type(system)
    base = f"/types/{vtype['id']}/encryption"
    assert (await system.client.request("GET", base)).json == {}
    created = await system.client.request("POST", base, body={"encryption": LUKS})
    assert created.status == 200, created.text
    body = created.json["encryption"]
    assert {k: body[k] for k in LUKS} == LUKS
    assert body["volume_type_id"] == vtype["id"]
    uuid.UUID(body["encryption_id"])

    shown = (await system.client.request("GET", base)).json
    assert set(shown) == {
        "volume_type_id",
        "control_location",
        "deleted",
        "created_at",
        "updated_at",
        "encryption_id",
        "key_size",
        "provider",
        "deleted_at",
        "cipher",
    }
    assert (shown["deleted"], shown["updated_at"], shown["deleted_at"]) == (False, None, None)
    one = await system.client.request("GET", f"{base}/cipher")
    assert one.json == {"cipher": "aes-xts-plain64"}
    eid = body["encryption_id"]
    assert (await system.client.request("GET", f"{base}/encryption_id")).json == {
        "encryption_id": eid
    }

    change = {"encryption": {"key_size": "512", "control_location": "back-end"}}
    updated = await system.client.request("PUT", f"{base}/{eid}", body=change)
    assert updated.status == 200, updated.text
    assert updated.json == {"encryption": {"key_size": 512, "control_location": "back-end"}}
    after = (await system.client.request("GET", base)).json
    assert (after["key_size"], after["control_location"], after["provider"]) == (
        512,
        "back-end",
        "luks",
    )
    assert after["updated_at"] is not None

    gone = await system.client.request("DELETE", f"{base}/{eid}")
    assert (gone.status, gone.text) == (202, "")
    assert (await system.client.request("GET", base)).json == {}
    again = await system.client.request("POST", base, body={"encryption": LUKS})
    assert again.status == 200  # a type may be encrypted again once it is not


async def test_encryption_bad_requests(system: System) -> None:
    vtype = await new_type(system)
    base = f"/types/{vtype['id']}/encryption"
    for bad in (
        {},
        [],
        {"encryption": []},
        {"encryption": {"control_location": "front-end"}},  # no provider
        {"encryption": {"provider": "luks"}},  # no control_location
        {"encryption": {**LUKS, "control_location": "middle"}},
        {"encryption": {**LUKS, "key_size": "abc"}},
        {"encryption": {**LUKS, "key_size": -1}},
        {"encryption": {**LUKS, "key_size": True}},
        {"encryption": {**LUKS, "provider": 5}},
        {"encryption": {**LUKS, "provider": "x" * 256}},
        {"encryption": {**LUKS, "cipher": 5}},
        {"encryption": LUKS, "extra": 1},
    ):
        reply = await system.client.request("POST", base, body=bad)
        assert reply.status == 400, (bad, reply.text)
        assert "badRequest" in reply.json, reply.text
    assert (await system.client.request("GET", base)).json == {}  # nothing was written
    nulls = {**LUKS, "cipher": None, "key_size": None}
    ok = await system.client.request("POST", base, body={"encryption": nulls})
    assert ok.status == 200, ok.text
    twice = await system.client.request("POST", base, body={"encryption": LUKS})
    assert twice.status == 400
    assert twice.json["badRequest"]["message"] == (
        f"Volume type encryption for type {vtype['id']} already exists."
    )
    bad_update = await system.client.request(
        "PUT", f"{base}/x", body={"encryption": {"control_location": "nowhere"}}
    )
    assert bad_update.status == 400
    missing_key = await system.client.request("GET", f"{base}/colour")
    assert missing_key.status == 404
    assert missing_key.json["itemNotFound"]["message"] == (
        f"Volume type encryption for type {vtype['id']} does not exist."
    )


async def test_encryption_not_found(system: System) -> None:
    nowhere = f"/types/{uuid.uuid4()}/encryption"
    assert (await system.client.request("GET", nowhere)).status == 404
    assert (await system.client.request("POST", nowhere, body={"encryption": LUKS})).status == 404
    assert (await system.client.request("GET", f"{nowhere}/cipher")).status == 404
    plain = await new_type(system)
    base = f"/types/{plain['id']}/encryption"
    update = await system.client.request("PUT", f"{base}/x", body={"encryption": LUKS})
    assert update.status == 404
    assert (await system.client.request("DELETE", f"{base}/x")).status == 404
    assert (await system.client.request("GET", f"{base}/cipher")).status == 404


async def test_encryption_is_admin_only(system: System) -> None:
    vtype = await encrypted_type(system)
    base = f"/types/{vtype['id']}/encryption"
    for roles in ("member", "reader", "member,reader"):
        user = system.client.as_(roles=roles)
        assert (await user.request("GET", base)).status == 403
        assert (await user.request("GET", f"{base}/cipher")).status == 403
        other = await new_type(system)
        created = await user.request(
            "POST", f"/types/{other['id']}/encryption", body={"encryption": LUKS}
        )
        assert created.status == 403
        changed = await user.request("PUT", f"{base}/x", body={"encryption": {"key_size": 1}})
        assert changed.status == 403
        assert (await user.request("DELETE", f"{base}/x")).status == 403
    assert (await system.client.request("GET", base)).json["key_size"] == 256


async def test_encryption_cannot_change_while_volumes_use_the_type(system: System) -> None:
    vtype = await encrypted_type(system)
    base = f"/types/{vtype['id']}/encryption"
    volume = await system.available_volume(1, volume_type=vtype["name"])
    update = await system.client.request("PUT", f"{base}/x", body={"encryption": {"key_size": 1}})
    assert update.status == 400
    assert update.json["badRequest"]["message"] == (
        "Cannot update encryption specs. Volume type in use."
    )
    delete = await system.client.request("DELETE", f"{base}/x")
    assert delete.status == 400
    assert "Cannot delete encryption specs" in delete.json["badRequest"]["message"]
    plain = await new_type(system)
    await system.available_volume(1, volume_type=plain["name"])
    create = await system.client.request(
        "POST", f"/types/{plain['id']}/encryption", body={"encryption": LUKS}
    )
    assert create.status == 400
    assert "Cannot create encryption specs" in create.json["badRequest"]["message"]
    assert (await system.client.request("GET", base)).json["key_size"] == 256
    assert volume["encrypted"] is True


async def test_encrypted_volume(system: System) -> None:
    vtype = await encrypted_type(system)
    volume = await system.available_volume(1, volume_type=vtype["name"])
    assert volume["encrypted"] is True
    new = system.client.as_(version="3.64")
    key_id = (await new.show(volume["id"])).json["volume"]["encryption_key_id"]
    uuid.UUID(key_id)
    old = system.client.as_(version="3.63")
    assert "encryption_key_id" not in (await old.show(volume["id"])).json["volume"]

    path = system.driver.volume_path(volume["id"], volume["os-vol-host-attr:host"])
    head = await asyncio.to_thread(_head, path)
    assert head.startswith(MAGIC)
    assert key_id.encode() in head
    assert path.stat().st_size == 2**30  # the header is inside the volume's size
    assert path.stat().st_size - LUKS1_HEADER == 2**30 - 2 * 2**20

    unmanage = await system.client.action(volume["id"], {"os-unmanage": None})
    assert unmanage.status == 400
    assert "Unmanaging encrypted volumes is not supported." in unmanage.text
    qcow = await system.client.action(
        volume["id"],
        {"os-volume_upload_image": {"image_name": "x", "disk_format": "qcow2"}},
    )
    assert qcow.status == 400
    assert "'raw' disk_format and 'bare' container_format" in qcow.text
    connect = await system.client.action(
        volume["id"], {"os-initialize_connection": {"connector": {"host": "h"}}}
    )
    assert connect.json["connection_info"]["data"]["encrypted"] is True
    plain = await system.available_volume(1)
    assert plain["encrypted"] is False
    assert "encryption_key_id" not in (await new.show(plain["id"])).json["volume"]


async def test_multiattach_and_encryption_do_not_mix(system: System) -> None:
    both = await encrypted_type(system, extra_specs={"multiattach": "<is> True"})
    owner = system.client.as_(project_id=uuid.uuid4().hex)
    refused = await owner.request(
        "POST", "/volumes", body={"volume": {"size": 1, "volume_type": both["name"]}}
    )
    assert refused.status == 400
    assert "Multiattach cannot be used with encrypted volumes." in refused.text
    volume = await system.available_volume(1)
    retype = await system.client.action(
        volume["id"], {"os-retype": {"new_type": both["name"], "migration_policy": "on-demand"}}
    )
    assert retype.status == 400
    assert "both encryption and multi-attach" in retype.text
    assert (await system.client.volume(volume["id"]))["status"] == "available"
