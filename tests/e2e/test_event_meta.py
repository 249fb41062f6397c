"""Every stored event says who and why: the request's ids, user, project, roles, action,
microversion, method, path and source address for API events; the saga, the causing event
and the request chain for saga steps."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import System

API_KEYS = {
    "request_id",
    "global_request_id",
    "user_id",
    "project_id",
    "roles",
    "is_admin",
    "action",
    "microversion",
    "remote_addr",
    "http_method",
    "request_path",
}


async def _metas(system: System, aggregate_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    rows = await system.pool.fetch(
        "SELECT originator_version, topic, meta::text FROM events WHERE originator_id = $1 "
        "ORDER BY originator_version",
        uuid.UUID(aggregate_id),
    )
    return [(r[0], r[1].rpartition(":")[2], json.loads(r[2])) for r in rows]


async def test_api_events_and_saga_steps_carry_who_and_why(system: System) -> None:
    project = uuid.uuid4().hex
    owner = system.client.as_(project_id=project, user_id="bob")
    created = await owner.create_volume(1)
    vid = created["id"]
    await system.until_status(vid, "available")
    member = owner.as_(roles="member,reader", version="3.42")
    global_id = f"req-{uuid.uuid4()}"
    extend = await member.action(
        vid, {"os-extend": {"new_size": 3}}, headers={"X-OpenStack-Request-ID": global_id}
    )
    assert extend.status == 202
    request_id = extend.headers["x-openstack-request-id"]
    await system.until_volume(vid, lambda v: v is not None and v["size"] == 3)

    events = {name: (version, meta) for version, name, meta in await _metas(system, vid)}
    requested_version, requested = events["Volume.ExtendRequested"]
    assert set(requested) == API_KEYS
    assert requested == {
        "request_id": request_id,
        "global_request_id": global_id,
        "user_id": "bob",
        "project_id": project,
        "roles": ["member", "reader"],
        "is_admin": False,
        "action": "os-extend",
        "microversion": "3.42",
        "remote_addr": "127.0.0.1",
        "http_method": "POST",
        "request_path": f"/v3/{project}/volumes/{vid}/action",
    }
    _, extended = events["Volume.Extended"]
    assert extended == {
        "actor": "saga:extend",
        "causation_id": f"{vid}:{requested_version}",
        "request_id": request_id,
        "global_request_id": global_id,
        "user_id": "bob",
        "project_id": project,
    }
    # The create: an API event with an admin caller, and the create saga's completion.
    _, create = events["Volume.Created"]
    assert (create["action"], create["is_admin"], create["roles"]) == (
        "volume:create",
        True,
        ["admin"],
    )
    assert (create["http_method"], create["request_path"]) == ("POST", f"/v3/{project}/volumes")
    _, completed = events["Volume.CreateCompleted"]
    assert completed["causation_id"] == f"{vid}:1"
    assert completed["request_id"] == create["request_id"]


async def test_snapshot_saga_steps_carry_the_request_chain(system: System) -> None:
    project = uuid.uuid4().hex
    owner = system.client.as_(project_id=project, user_id="carol")
    vid = (await owner.create_volume(1))["id"]
    await system.until_status(vid, "available")
    global_id = f"req-{uuid.uuid4()}"
    reply = await owner.request(
        "POST",
        "/snapshots",
        body={"snapshot": {"volume_id": vid}},
        headers={"X-OpenStack-Request-ID": global_id},
    )
    assert reply.status == 202, reply.text
    sid = reply.json["snapshot"]["id"]

    async def settled() -> list[tuple[int, str, dict[str, Any]]] | None:
        found = await _metas(system, sid)
        return found if any(name == "Snapshot.CreateCompleted" for _, name, _ in found) else None

    metas = await system.projected.until(settled)
    by_name = {name: meta for _, name, meta in metas}
    assert by_name["Snapshot.Created"]["action"] == "snapshot:create"
    done = by_name["Snapshot.CreateCompleted"]
    assert done["actor"] == "saga:snapshot"
    assert done["causation_id"] == f"{sid}:1"
    assert done["request_id"] == reply.headers["x-openstack-request-id"]
    assert (done["global_request_id"], done["user_id"], done["project_id"]) == (
        global_id,
        "carol",
        project,
    )


async def test_a_refused_request_is_logged_with_who_and_appends_nothing(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    project = uuid.uuid4().hex
    owner = system.client.as_(project_id=project, user_id="dave")
    vid = (await owner.create_volume(1))["id"]
    await system.until_status(vid, "available")
    before = await _metas(system, vid)
    caplog.set_level(logging.INFO, logger="cinderblock.api.access")
    refused = await owner.action(vid, {"os-extend": {"new_size": 1}})
    assert refused.status == 400
    request_id = refused.headers["x-openstack-request-id"]
    [line] = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert line.getMessage().startswith("POST /v3/{project_id}/volumes/{volume_id}/action 400 ")
    assert line.fault.startswith("Invalid input received:")
    fields = {k: getattr(line, k) for k in ("volume_id", "user_id", "project_id", "remote_addr")}
    assert fields == {
        "volume_id": vid,
        "user_id": "dave",
        "project_id": project,
        "remote_addr": "127.0.0.1",
    }
    assert await _metas(system, vid) == before
