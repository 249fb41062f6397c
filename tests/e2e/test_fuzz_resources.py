"""The resources the actions act on answer every request shape without a 500, and a refused
request writes nothing: hypothesis mutates valid bodies of volumes, snapshots, types, extra
specs, volume metadata, attachments and quota sets, and sends random query strings to the
lists, with random microversions and personas (same checks as test_fuzz_actions)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import System
from tests.helpers.fuzz import FAULTS, events_of_request, in_loop, json_values, personas

# (method, path with {vid}/{sid}/{tid}/{aid}/{project}, valid body or None)
TEMPLATES: list[tuple[str, str, Any]] = [
    (
        "POST",
        "/volumes",
        {
            "volume": {
                "size": 1,
                "name": "fz",
                "description": "d",
                "volume_type": "__DEFAULT__",
                "metadata": {"k": "v"},
                "availability_zone": "nova",
                "multiattach": False,
                "snapshot_id": None,
                "source_volid": None,
                "imageRef": None,
            }
        },
    ),
    ("PUT", "/volumes/{vid}", {"volume": {"name": "n", "description": "d", "metadata": {}}}),
    ("DELETE", "/volumes/{vid}", None),
    ("POST", "/volumes/{vid}/metadata", {"metadata": {"k": "v"}}),
    ("PUT", "/volumes/{vid}/metadata", {"metadata": {"k": "v"}}),
    ("PUT", "/volumes/{vid}/metadata/k", {"meta": {"k": "w"}}),
    ("DELETE", "/volumes/{vid}/metadata/k", None),
    (
        "POST",
        "/snapshots",
        {"snapshot": {"volume_id": "{vid}", "name": "s", "force": False, "metadata": {}}},
    ),
    ("PUT", "/snapshots/{sid}", {"snapshot": {"name": "s2", "description": "d"}}),
    ("DELETE", "/snapshots/{sid}", None),
    (
        "POST",
        "/types",
        {
            "volume_type": {
                "name": "fz-type",
                "description": "d",
                "extra_specs": {"multiattach": "<is> True"},
                "os-volume-type-access:is_public": True,
            }
        },
    ),
    ("PUT", "/types/{tid}", {"volume_type": {"name": "fz-2", "description": "d"}}),
    ("POST", "/types/{tid}/extra_specs", {"extra_specs": {"volume_backend_name": "file-a"}}),
    ("POST", "/types/{tid}/action", {"addProjectAccess": {"project": "{project}"}}),
    ("DELETE", "/types/{tid}", None),
    (
        "POST",
        "/attachments",
        {
            "attachment": {
                "volume_uuid": "{vid}",
                "instance_uuid": str(uuid.uuid4()),
                "connector": {"host": "h", "initiator": "i", "mode": "rw"},
                "mode": "rw",
            }
        },
    ),
    ("PUT", "/attachments/{aid}", {"attachment": {"connector": {"host": "h"}}}),
    ("POST", "/attachments/{aid}/action", {"os-complete": {}}),
    ("DELETE", "/attachments/{aid}", None),
    ("PUT", "/os-quota-sets/{project}", {"quota_set": {"volumes": 20, "gigabytes": 100}}),
    ("DELETE", "/os-quota-sets/{project}", None),
]
LISTS = [
    "/volumes",
    "/volumes/detail",
    "/snapshots/detail",
    "/types",
    "/attachments/detail",
    "/os-quota-sets/{project}",
    "/scheduler-stats/get_pools",
    "/os-services",
]
QUERY_KEYS = [
    *("limit", "marker", "sort", "sort_key", "sort_dir", "offset", "all_tenants", "name"),
    *("status", "detail", "usage", "bootable", "with_count", "is_public", "host", "x"),
]
microversions = st.none() | st.sampled_from(
    ["volume 3.0", "volume 3.27", "volume 3.44", "volume 3.59", "volume latest", "volume 9.9"]
)


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, real in ids.items():
            value = value.replace("{" + name + "}", real)
        return value
    if isinstance(value, dict):
        return {_fill(k, ids): _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def _mutate(draw: st.DrawFn, body: Any) -> Any:
    """Valid, or one value somewhere inside replaced/dropped/added, or replaced whole."""
    how = draw(st.sampled_from(["valid", "valid", "inner", "drop", "add", "whole"]))
    if how == "valid" or (body is None and how != "whole"):
        return body
    if how == "whole":
        return draw(json_values)
    outer = next(iter(body))
    inner = body[outer]
    if not isinstance(inner, dict) or not inner:
        return {outer: draw(json_values)}
    inner = dict(inner)
    key = draw(st.sampled_from(sorted(inner)))
    if how == "drop":
        del inner[key]
    elif how == "add":
        inner[draw(st.text(max_size=12))] = draw(json_values)
    else:
        inner[key] = draw(json_values)
    return {outer: inner}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes | None]:
    if draw(st.integers(0, 4)) == 0:
        path = draw(st.sampled_from(LISTS))
        pairs = draw(
            st.lists(
                st.tuples(st.sampled_from(QUERY_KEYS), st.text(max_size=20) | st.just("")),
                max_size=4,
            )
        )
        query = "&".join(f"{k}={v}" for k, v in pairs)
        return "GET", f"{path}?{query}" if query else path, None
    method, path, body = draw(st.sampled_from(TEMPLATES))
    mutated = _mutate(draw, body)
    raw = None if mutated is None and body is None else json.dumps(mutated).encode()
    return method, path, raw


async def _resources(system: System, project: str) -> dict[str, str]:
    owner = system.client.as_(project_id=project)
    volumes = [(await owner.create_volume(1))["id"] for _ in range(2)]
    for vid in volumes:
        await system.until_status(vid, "available")
    reply = await owner.request("POST", "/types", body={"volume_type": {"name": uuid.uuid4().hex}})
    assert reply.status == 200, reply.text
    type_id = reply.json["volume_type"]["id"]
    reply = await owner.request("POST", "/snapshots", body={"snapshot": {"volume_id": volumes[0]}})
    assert reply.status == 202, reply.text
    snapshot_id = reply.json["snapshot"]["id"]
    attach = {"attachment": {"volume_uuid": volumes[1], "instance_uuid": str(uuid.uuid4())}}
    reply = await owner.as_(version="3.27").request("POST", "/attachments", body=attach)
    assert reply.status == 200, reply.text
    return {
        "vid": volumes[0],
        "sid": snapshot_id,
        "tid": type_id,
        "aid": reply.json["attachment"]["id"],
        "project": project,
    }


async def _send(
    system: System,
    session: aiohttp.ClientSession,
    project: str,
    request: tuple[str, str, bytes | None],
    version: str | None,
    roles: str | None,
) -> tuple[int, bytes, str]:
    method, path, raw = request
    headers = {"X-Auth-Token": f"fuzz:{project}", "Content-Type": "application/json"}
    if version is not None:
        headers["OpenStack-API-Version"] = version
    if roles is not None:
        headers["X-Roles"] = roles
    url = f"{system.url}/v3/{project}{path}"
    async with session.request(method, url, data=raw, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers.get("x-openstack-request-id", "")


async def test_no_resource_request_of_any_shape_gets_a_500(system: System) -> None:
    loop = asyncio.get_running_loop()
    project = uuid.uuid4().hex
    ids = await _resources(system, project)
    seen: dict[int, int] = {}
    async with aiohttp.ClientSession() as session:

        @settings(
            max_examples=400,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(request=requests(), version=microversions, roles=personas)
        def check(
            request: tuple[str, str, bytes | None], version: str | None, roles: str | None
        ) -> None:
            method, path, raw = request
            path = _fill(path, ids)
            if raw is not None:
                raw = _fill(raw.decode(), ids).encode()
            status, data, request_id = in_loop(
                loop, _send(system, session, project, (method, path, raw), version, roles)
            )
            seen[status] = seen.get(status, 0) + 1
            where = (method, path, raw, version, roles)
            assert status < 500, (status, where, data[:500])
            if status >= 400 and status != 406 and data:
                fault = json.loads(data)
                assert len(fault) == 1, (status, where, data)
                assert next(iter(fault)) in FAULTS, (status, where, data)
                assert in_loop(loop, events_of_request(system, request_id)) == 0, (status, where)

        await asyncio.to_thread(check)
    print("answers by status:", dict(sorted(seen.items())))
    assert any(200 <= s < 300 for s in seen), seen
    assert any(400 <= s < 500 for s in seen), seen
