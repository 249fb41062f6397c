"""Volume types: admin CRUD, extra specs, access; volumes take their type's meaning
(multiattach, backend placement, size limits, per-type quota keys)."""

from __future__ import annotations

import uuid

from tests.e2e.conftest import System
from tests.helpers.cinder import new_type


async def test_default_type_exists_and_is_listed(system: System) -> None:
    default = await system.client.request("GET", "/types/default")
    assert default.status == 200
    assert default.json["volume_type"]["name"] == "__DEFAULT__"
    listed = await system.client.request("GET", "/types")
    assert "__DEFAULT__" in [t["name"] for t in listed.json["volume_types"]]
    refused = await system.client.request("DELETE", f"/types/{default.json['volume_type']['id']}")
    assert refused.status == 400


async def test_type_crud_and_extra_specs(system: System) -> None:
    vtype = await new_type(system, description="gold", extra_specs={"capabilities": "gpu"})
    assert set(vtype) == {
        "id",
        "name",
        "description",
        "is_public",
        "os-volume-type-access:is_public",
        "extra_specs",
        "qos_specs_id",
    }
    assert vtype["extra_specs"] == {"capabilities": "gpu"}
    dup = await system.client.request(
        "POST", "/types", body={"volume_type": {"name": vtype["name"]}}
    )
    assert dup.status == 409
    renamed = await system.client.request(
        "PUT", f"/types/{vtype['id']}", body={"volume_type": {"description": "silver"}}
    )
    assert renamed.json["volume_type"]["description"] == "silver"
    by_name = await system.client.request("GET", f"/types/{vtype['id']}")
    assert by_name.status == 200
    specs = await system.client.request(
        "POST",
        f"/types/{vtype['id']}/extra_specs",
        body={"extra_specs": {"provisioning:max_vol_size": "5"}},
    )
    assert specs.json == {"extra_specs": {"provisioning:max_vol_size": "5"}}
    one = await system.client.request(
        "GET", f"/types/{vtype['id']}/extra_specs/provisioning:max_vol_size"
    )
    assert one.json == {"provisioning:max_vol_size": "5"}
    member = system.client.as_(roles="member")
    hidden = await member.request("GET", f"/types/{vtype['id']}")
    assert "capabilities" not in hidden.json["volume_type"]["extra_specs"]
    assert (
        await member.request("POST", "/types", body={"volume_type": {"name": "x"}})
    ).status == 403
    gone = await system.client.request("DELETE", f"/types/{vtype['id']}")
    assert gone.status == 202
    assert (await system.client.request("GET", f"/types/{vtype['id']}")).status == 404
    again = await new_type(system)
    reuse = await system.client.request(
        "PUT", f"/types/{again['id']}", body={"volume_type": {"name": vtype["name"]}}
    )
    assert reuse.status == 200  # the deleted type's name is free again


async def test_volumes_follow_their_type(system: System) -> None:
    small = await new_type(
        system, extra_specs={"provisioning:max_vol_size": "2", "volume_backend_name": "file-b"}
    )
    client = system.client.as_(project_id=uuid.uuid4().hex)
    too_big = await client.request(
        "POST", "/volumes", body={"volume": {"size": 3, "volume_type": small["name"]}}
    )
    assert too_big.status == 400
    created = await client.create_volume(1, volume_type=small["name"])
    volume = await system.until_status(created["id"], "available")
    assert volume["volume_type"] == small["name"]
    assert "@file-b#" in volume["os-vol-host-attr:host"]
    grow = await client.action(volume["id"], {"os-extend": {"new_size": 3}})
    assert grow.status == 400  # beyond the type's max size
    in_use = await system.client.request("DELETE", f"/types/{small['id']}")
    assert in_use.status == 400
    unknown = await client.request(
        "POST", "/volumes", body={"volume": {"size": 1, "volume_type": "no-such"}}
    )
    assert unknown.status == 404
    assert unknown.json["itemNotFound"]["message"] == (
        "Volume type with name no-such could not be found."
    )


async def test_multiattach_type_allows_two_attachments(system: System) -> None:
    multi = await new_type(system, extra_specs={"multiattach": "<is> True"})
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1, volume_type=multi["id"])
    volume = await system.until_status(created["id"], "available")
    assert volume["multiattach"] is True
    assert "file-b" in volume["os-vol-host-attr:host"]  # the multiattach-capable backend
    for server in (str(uuid.uuid4()), str(uuid.uuid4())):
        body = {"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdb"}}
        assert (await client.action(volume["id"], body)).status == 202
    shown = await client.volume(volume["id"])
    assert shown is not None
    assert len(shown["attachments"]) == 2
    no_id = await client.action(volume["id"], {"os-detach": {}})
    assert no_id.status == 409  # two attachments, none named


async def test_private_type_access(system: System) -> None:
    private = await new_type(system, **{"os-volume-type-access:is_public": False})
    project = uuid.uuid4().hex
    member = system.client.as_(project_id=project, roles="member")
    assert (await member.request("GET", f"/types/{private['id']}")).status == 404
    add = await system.client.request(
        "POST", f"/types/{private['id']}/action", body={"addProjectAccess": {"project": project}}
    )
    assert add.status == 202
    assert (await member.request("GET", f"/types/{private['id']}")).status == 200
    created = await member.create_volume(1, volume_type=private["name"])
    await system.until_status(created["id"], "available")


async def test_admin_type_list_is_public_filter(system: System) -> None:
    """Cinder's ``_parse_is_public``: public types by default, ``None`` (what
    python-cinderclient sends) for all, a strict boolean otherwise."""
    private = await new_type(system, **{"os-volume-type-access:is_public": False})
    public = await new_type(system)

    async def names(query: str) -> set[str]:
        reply = await system.client.request("GET", f"/types{query}")
        assert reply.status == 200, reply.text
        return {t["name"] for t in reply.json["volume_types"]}

    default = await names("")
    assert public["name"] in default
    assert private["name"] not in default
    assert {public["name"], private["name"]} <= await names("?is_public=None")
    only_private = await names("?is_public=false")
    assert private["name"] in only_private
    assert public["name"] not in only_private
    bad = await system.client.request("GET", "/types?is_public=maybe")
    assert bad.status == 400
    assert bad.json["badRequest"]["message"] == "Invalid is_public filter [maybe]"
