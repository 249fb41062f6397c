"""No request of any shape gets a 500, and a refused request writes nothing.

Hypothesis sends the action endpoint bodies derived from a valid body of each of the 23
actions (a value replaced by arbitrary JSON, a key dropped or added, the whole payload
replaced), raw garbage, random microversions and personas, at volumes in several states
(which the accepted requests keep changing). Every answer must be below 500, a fault must
be a Cinder-style fault body, and for every 4xx the event table must hold no event carrying
that request's id.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import System
from tests.helpers.fuzz import FAULTS, HOST, events_of_request, in_loop, json_values, personas

SNAPSHOT = "00000000-0000-0000-0000-000000000001"  # replaced by a real one at run time
VALID: dict[str, Any] = {
    "os-extend": {"new_size": 3},
    "os-reset_status": {"status": "available", "attach_status": "detached"},
    "revert": {"snapshot_id": SNAPSHOT},
    "os-set_image_metadata": {"metadata": {"image_name": "x"}},
    "os-unset_image_metadata": {"key": "image_name"},
    "os-show_image_metadata": None,
    "os-attach": {"instance_uuid": str(uuid.uuid4()), "mountpoint": "/dev/vdb"},
    "os-detach": {},
    "os-unmanage": {},
    "os-force_detach": {"attachment_id": None, "connector": None},
    "os-retype": {"new_type": "__DEFAULT__", "migration_policy": "on-demand"},
    "os-migrate_volume": {"host": HOST, "force_host_copy": False, "lock_volume": False},
    "os-migrate_volume_completion": {"new_volume": str(uuid.uuid4()), "error": False},
    "os-force_delete": {},
    "os-set_bootable": {"bootable": True},
    "os-volume_upload_image": {
        "image_name": "fuzz",
        "disk_format": "raw",
        "container_format": "bare",
        "force": False,
        "visibility": "private",
        "protected": False,
    },
    "os-reserve": None,
    "os-unreserve": None,
    "os-begin_detaching": None,
    "os-roll_detaching": None,
    "os-terminate_connection": {"connector": {"host": "h", "initiator": "i"}},
    "os-initialize_connection": {"connector": {"host": "h", "initiator": "i"}},
    "os-update_readonly_flag": {"readonly": True},
}


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, Any]:
    action = draw(st.sampled_from(sorted(VALID)) | st.sampled_from(["os-nope", "", "extend"]))
    payload = VALID.get(action)
    how = draw(st.sampled_from(["valid", "valid", "valid", "replace", "drop", "add", "whole"]))
    if isinstance(payload, dict) and payload and how in ("replace", "drop"):
        payload = dict(payload)
        key = draw(st.sampled_from(sorted(payload)))
        if how == "drop":
            del payload[key]
        else:
            payload[key] = draw(json_values)
    elif how == "add":
        payload = dict(payload or {})
        payload[draw(st.text(max_size=12))] = draw(json_values)
    elif how == "whole":
        payload = draw(json_values)
    return action, payload


bodies = payloads().map(lambda ap: json.dumps({ap[0]: ap[1]}).encode()) | st.sampled_from(
    [b"", b"{", b"null", b"[]", b'{"os-extend": NaN}', b"\xff\xfe", b'{"a": 1, "b": 2}']
)
microversions = st.none() | st.sampled_from(
    [
        *("volume 3.0", "volume 3.16", "volume 3.40", "volume 3.42", "volume 3.64"),
        *("volume latest", "volume 3.72", "volume 4.0", "volume", "volume 3.x"),
        *("compute 2.1", "volume 3.00"),
    ]
)


async def _prepare(system: System, project: str) -> list[str]:
    """Volumes in several states, in one fresh project."""
    owner = system.client.as_(project_id=project)
    vids = []
    for _ in range(5):
        created = await owner.create_volume(1)
        vids.append(created["id"])
    for vid in vids:
        await system.until_status(vid, "available")
    attach = {"os-attach": {"instance_uuid": str(uuid.uuid4()), "mountpoint": "/dev/vdb"}}
    assert (await owner.action(vids[1], attach)).status == 202
    reset = {"os-reset_status": {"status": "error"}}
    assert (await owner.action(vids[2], reset)).status == 202
    reply = await owner.request("POST", "/snapshots", body={"snapshot": {"volume_id": vids[3]}})
    assert reply.status == 202, reply.text
    VALID["revert"] = {"snapshot_id": reply.json["snapshot"]["id"]}
    vids.append(str(uuid.uuid4()))  # never existed: 404 territory
    return vids


async def _send(
    system: System,
    session: aiohttp.ClientSession,
    project: str,
    vid: str,
    body: bytes,
    version: str | None,
    roles: str | None,
) -> tuple[int, bytes, str]:
    headers = {"X-Auth-Token": f"fuzz:{project}", "Content-Type": "application/json"}
    if version is not None:
        headers["OpenStack-API-Version"] = version
    if roles is not None:
        headers["X-Roles"] = roles
    url = f"{system.url}/v3/{project}/volumes/{vid}/action"
    async with session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers.get("x-openstack-request-id", "")


async def test_no_action_request_of_any_shape_gets_a_500(system: System) -> None:
    loop = asyncio.get_running_loop()
    project = uuid.uuid4().hex
    async with aiohttp.ClientSession() as session:
        vids = await _prepare(system, project)
        seen: dict[int, int] = {}

        @settings(
            max_examples=400,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            target=st.sampled_from(vids),
            body=bodies,
            version=microversions,
            roles=personas,
        )
        def check(target: str, body: bytes, version: str | None, roles: str | None) -> None:
            status, data, request_id = in_loop(
                loop, _send(system, session, project, target, body, version, roles)
            )
            seen[status] = seen.get(status, 0) + 1
            assert status < 500, (status, body, version, roles, data[:500])
            assert request_id.startswith("req-"), (status, body)
            if status >= 400:
                if status == 406 or data == b"":
                    return
                fault = json.loads(data)
                assert len(fault) == 1, (status, body, data)
                assert next(iter(fault)) in FAULTS, (status, body, data)
                assert "message" in next(iter(fault.values())), (status, body, data)
                assert in_loop(loop, events_of_request(system, request_id)) == 0, (status, body)

        await asyncio.to_thread(check)
    # The run really covered both sides: requests accepted and requests refused.
    print("answers by status:", dict(sorted(seen.items())))
    assert any(200 <= s < 300 for s in seen), seen
    assert any(400 <= s < 500 for s in seen), seen
