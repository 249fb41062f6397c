"""Discovery, microversions, identity, policy and URL forms, over real HTTP."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import System


async def test_version_documents_without_auth(system: System) -> None:
    root = await system.client.request("GET", "", url=f"{system.url}/", headers={})
    assert root.status == 300
    doc = root.json["versions"][0]
    assert (doc["id"], doc["version"], doc["min_version"]) == ("v3.0", "3.71", "3.0")
    assert root.headers["x-openstack-request-id"].startswith("req-")
    for path in ("/v3", "/v3/"):
        async with system.client.session.get(f"{system.url}{path}") as resp:
            assert resp.status == 200
            body = await resp.json()
    self_link = next(link for link in body["versions"][0]["links"] if link["rel"] == "self")
    assert self_link["href"] == f"{system.url}/v3/"


async def test_noauth_without_token_gets_the_token_reply(system: System) -> None:
    async with system.client.session.get(
        f"{system.url}/v3/volumes", headers={"X-Auth-User": "u1", "X-Auth-Project-Id": "abc"}
    ) as resp:
        assert resp.status == 204
        assert resp.headers["X-Auth-Token"] == "u1:abc"


@pytest.mark.parametrize(
    ("header", "status", "echo"),
    [
        (None, 200, "volume 3.0"),
        ("volume 3.42", 200, "volume 3.42"),
        ("volume latest", 200, "volume 3.71"),
        ("compute 2.1, volume 3.50", 200, "volume 3.50"),
        ("volume 3.72", 406, "volume 3.72"),
        ("volume 4.0", 406, "volume 4.0"),
        ("volume 2.0", 406, None),
        ("volume 3.05", 400, None),
        ("volume", 400, None),
        ("compute 2.1", 400, None),
    ],
)
async def test_microversion_negotiation(
    system: System, header: str | None, status: int, echo: str | None
) -> None:
    extra = {"OpenStack-API-Version": header} if header else {}
    reply = await system.client.request("GET", "/volumes", headers=extra)
    assert reply.status == status, reply.text
    assert reply.headers.get("OpenStack-API-Version") == echo
    if echo is not None:
        assert reply.headers["Vary"] == "OpenStack-API-Version"
    if status == 406:
        assert list(reply.json) == ["computeFault"]


async def test_both_url_forms_and_project_mismatch(system: System) -> None:
    volume = await system.available_volume(1)
    projectless = await system.client.request(
        "GET", "", url=f"{system.url}/v3/volumes/{volume['id']}"
    )
    assert projectless.status == 200
    links = projectless.json["volume"]["links"]
    assert links[0]["href"] == f"{system.url}/v3/volumes/{volume['id']}"
    other = uuid.uuid4().hex
    mismatch = await system.client.request(
        "GET", "", url=f"{system.url}/v3/{other}/volumes/{volume['id']}"
    )
    assert mismatch.status == 400
    assert mismatch.json["badRequest"]["message"] == "Malformed request url"


async def test_unknown_route_is_a_json_fault(system: System) -> None:
    reply = await system.client.request("GET", "/nothing-here")
    assert reply.status == 404
    assert list(reply.json) == ["itemNotFound"]
    wrong_method = await system.client.request("PATCH", "/volumes")
    assert wrong_method.status == 405
    assert list(wrong_method.json) == ["badMethod"]


async def test_other_projects_volumes_are_404_for_members(system: System) -> None:
    owner = system.client.as_(project_id=uuid.uuid4().hex, roles="member")
    created = await owner.create_volume(1)
    await system.until_status(created["id"], "available")
    stranger = system.client.as_(project_id=uuid.uuid4().hex, roles="member")
    assert (await stranger.show(created["id"])).status == 404
    extend = await stranger.action(created["id"], {"os-extend": {"new_size": 2}})
    assert extend.status == 404
    listed = await stranger.request("GET", "/volumes")
    assert created["id"] not in [v["id"] for v in listed.json["volumes"]]
    mine = await owner.request("GET", "/volumes/detail")
    assert [v["id"] for v in mine.json["volumes"]] == [created["id"]]
    assert "os-vol-host-attr:host" not in mine.json["volumes"][0]
    assert "migration_status" not in mine.json["volumes"][0]


async def test_reader_may_look_but_not_act(system: System) -> None:
    project = uuid.uuid4().hex
    member = system.client.as_(project_id=project, roles="member")
    reader = system.client.as_(project_id=project, roles="reader")
    created = await member.create_volume(1)
    await system.until_status(created["id"], "available")
    assert (await reader.show(created["id"])).status == 200
    denied = await reader.action(created["id"], {"os-set_bootable": {"bootable": True}})
    assert denied.status == 403
    assert denied.json == {
        "forbidden": {"code": 403, "message": "Policy doesn't allow volume:update to be performed."}
    }
    extend = await reader.action(created["id"], {"os-extend": {"new_size": 2}})
    assert extend.status == 403
    assert "volume:extend" in extend.json["forbidden"]["message"]
    allowed = await member.action(created["id"], {"os-set_bootable": {"bootable": True}})
    assert allowed.status == 200
    create = await reader.request("POST", "/volumes", body={"volume": {"size": 1}})
    assert create.status == 403


async def test_list_pagination_and_sort(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex)
    ids = [(await client.create_volume(1, name=f"v{i}"))["id"] for i in range(5)]
    page1 = await client.request("GET", "/volumes?limit=2&sort=name:asc")
    assert [v["name"] for v in page1.json["volumes"]] == ["v0", "v1"]
    next_link = page1.json["volumes_links"][0]["href"]
    page2 = await client.request("GET", "", url=next_link)
    assert [v["name"] for v in page2.json["volumes"]] == ["v2", "v3"]
    default = await client.request("GET", "/volumes/detail")
    assert [v["id"] for v in default.json["volumes"]] == list(reversed(ids))
    counted = await client.as_(version="3.45").request("GET", "/volumes?with_count=true&limit=1")
    assert counted.json["count"] == 5
    filtered = await client.request("GET", "/volumes?name=v3")
    assert [v["name"] for v in filtered.json["volumes"]] == ["v3"]
    bad = await client.request("GET", "/volumes?limit=-1")
    assert bad.status == 400
    member = client.as_(version="3.31", roles="member")
    strict = await member.request("GET", "/volumes?colour=red")
    assert strict.status == 400
    admin_strict = await client.as_(version="3.31").request("GET", "/volumes?colour=red")
    assert admin_strict.status == 200  # Cinder does not check admins' filters
    lenient = await client.request("GET", "/volumes?colour=red")
    assert lenient.status == 200


async def test_request_ids(system: System) -> None:
    global_id = f"req-{uuid.uuid4()}"
    reply = await system.client.request(
        "GET", "/volumes", headers={"X-OpenStack-Request-ID": global_id}
    )
    assert reply.headers["x-openstack-request-id"] != global_id
    assert reply.headers["x-openstack-request-id"].startswith("req-")
    assert reply.headers["x-compute-request-id"] == reply.headers["x-openstack-request-id"]
    volume = await system.available_volume(1)
    deleted = await system.client.request("DELETE", f"/volumes/{volume['id']}")
    assert deleted.status == 202
    assert "x-compute-request-id" not in deleted.headers  # a hand-built reply in Cinder


async def test_healthcheck(system: System) -> None:
    async with system.client.session.get(f"{system.url}/healthcheck") as resp:
        assert (resp.status, await resp.text()) == (200, "OK")
    async with system.client.session.head(f"{system.url}/healthcheck") as resp:
        assert resp.status == 204
