"""A volume's encryption metadata, as Nova asks for it before attaching an encrypted volume
(``GET /volumes/{id}/encryption``, issue 9): the key id, and the type's encryption fields
when the volume is encrypted."""

from __future__ import annotations

import uuid

from tests.e2e.conftest import System
from tests.helpers.cinder import LUKS, encrypted_type


async def test_unencrypted_volume_has_only_a_null_key_id(system: System) -> None:
    volume = await system.available_volume(1)
    reader = system.client.as_(project_id=volume["os-vol-tenant-attr:tenant_id"], roles="reader")
    reply = await reader.request("GET", f"/volumes/{volume['id']}/encryption")
    assert (reply.status, reply.json) == (200, {"encryption_key_id": None})
    item = await reader.request("GET", f"/volumes/{volume['id']}/encryption/encryption_key_id")
    assert (item.status, item.json) == (200, None)
    missing = await reader.request("GET", f"/volumes/{volume['id']}/encryption/provider")
    assert missing.status == 404
    assert list(missing.json) == ["itemNotFound"]


async def test_encrypted_volume_shows_its_type_encryption_and_key(system: System) -> None:
    vtype = await encrypted_type(system)
    project = uuid.uuid4().hex
    member = system.client.as_(project_id=project, roles="member", version="3.64")
    created = await member.create_volume(1, volume_type=vtype["name"])
    volume = await system.until_status(created["id"], "available")
    key_id = (await member.show(volume["id"])).json["volume"]["encryption_key_id"]
    uuid.UUID(key_id)

    reply = await member.request("GET", f"/volumes/{volume['id']}/encryption")
    assert reply.status == 200, reply.text
    assert reply.json == {"encryption_key_id": key_id, **LUKS}
    for key, value in (*LUKS.items(), ("encryption_key_id", key_id)):
        item = await member.request("GET", f"/volumes/{volume['id']}/encryption/{key}")
        assert (item.status, item.json) == (200, value), key
    unknown = await member.request("GET", f"/volumes/{volume['id']}/encryption/volume_type_id")
    assert unknown.status == 404

    # the URL without the project id answers the same
    projectless = await member.request(
        "GET", "", url=f"{system.url}/v3/volumes/{volume['id']}/encryption"
    )
    assert (projectless.status, projectless.json) == (200, reply.json)


async def test_who_may_read_it(system: System) -> None:
    volume = await system.available_volume(1)
    vid, project = volume["id"], volume["os-vol-tenant-attr:tenant_id"]
    stranger = system.client.as_(project_id=uuid.uuid4().hex, roles="member")
    hidden = await stranger.request("GET", f"/volumes/{vid}/encryption")
    assert (hidden.status, list(hidden.json)) == (404, ["itemNotFound"])
    assert hidden.json["itemNotFound"]["message"] == f"Volume {vid} could not be found."
    no_role = system.client.as_(project_id=project, roles="no-such-role")
    refused = await no_role.request("GET", f"/volumes/{vid}/encryption")
    assert (refused.status, list(refused.json)) == (403, ["forbidden"])
    admin = system.client.as_(project_id=uuid.uuid4().hex)  # admin of another project
    assert (await admin.request("GET", f"/volumes/{vid}/encryption")).status == 200
    gone = await admin.request("GET", f"/volumes/{uuid.uuid4()}/encryption")
    assert gone.status == 404
