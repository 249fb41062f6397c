"""Bad input gets Cinder's fault body and changes nothing: the event count is asserted."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.e2e.conftest import System


async def event_count(pool: asyncpg.Pool, volume_id: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM events WHERE originator_id = $1", uuid.UUID(volume_id)
    )
    return count


BAD_BODIES = [
    # (raw body, content type, status, fault name, message fragment)
    (b"{not json", "application/json", 400, "badRequest", "Malformed request body"),
    (b"", "application/json", 400, "badRequest", "None"),
    (b"[1]", "application/json", 400, "badRequest", "Malformed request body"),
    (b'"os-extend"', "application/json", 400, "badRequest", "Malformed request body"),
    (b"null", "application/json", 400, "badRequest", "Malformed request body"),
    (b"{}", "application/json", 400, "badRequest", "Malformed request body"),
    (
        b'{"os-extend": {"new_size": 5}, "os-set_bootable": {"bootable": true}}',
        "application/json",
        400,
        "badRequest",
        "Malformed request body",
    ),
    (b'{"os-nope": {}}', "application/json", 400, "badRequest", "There is no such action: os-nope"),
    (b'{"os-extend": {"new_size": 5}}', "text/plain", 415, "badMediaType", "Unsupported"),
    (b'{"os-extend": {"new_size": "abc"}}', "application/json", 400, "badRequest", "new_size"),
    (b'{"os-extend": {"new_size": null}}', "application/json", 400, "badRequest", "new_size"),
    (b'{"os-extend": {"new_size": 0}}', "application/json", 400, "badRequest", "new_size"),
    (b'{"os-extend": {"new_size": 1.5}}', "application/json", 400, "badRequest", "new_size"),
    (b'{"os-extend": {"new_size": true}}', "application/json", 400, "badRequest", "new_size"),
    (b'{"os-extend": {}}', "application/json", 400, "badRequest", "new_size"),
    (b'{"os-extend": {"new_size": 5, "x": 1}}', "application/json", 400, "badRequest", "x"),
    (b'{"os-extend": null}', "application/json", 400, "badRequest", "os-extend"),
    (b'{"os-extend": []}', "application/json", 400, "badRequest", "os-extend"),
    (b'{"os-set_bootable": {"bootable": "tt"}}', "application/json", 400, "badRequest", "bootable"),
    (b'{"os-set_bootable": {"bootable": 11}}', "application/json", 400, "badRequest", "bootable"),
    (b'{"os-set_bootable": {}}', "application/json", 400, "badRequest", "bootable"),
    (b'{"os-set_bootable": {"bootable": null}}', "application/json", 400, "badRequest", "bootable"),
]


@pytest.mark.parametrize(("raw", "ctype", "status", "fault", "fragment"), BAD_BODIES)
async def test_bad_action_body_is_rejected_and_appends_nothing(
    system: System,
    raw: bytes,
    ctype: str,
    status: int,
    fault: str,
    fragment: str,
) -> None:
    volume = await system.available_volume(1)
    before = await event_count(system.pool, volume["id"])
    reply = await system.client.request(
        "POST", f"/volumes/{volume['id']}/action", raw=raw, headers={"Content-Type": ctype}
    )
    assert reply.status == status, reply.text
    body = reply.json
    assert list(body) == [fault]
    assert body[fault]["code"] == status
    assert fragment in body[fault]["message"]
    assert reply.headers["x-openstack-request-id"].startswith("req-")
    assert await event_count(system.pool, volume["id"]) == before
    shown = await system.client.volume(volume["id"])
    assert shown is not None
    assert (shown["status"], shown["size"], shown["bootable"]) == ("available", 1, "false")


async def test_schema_errors_beat_not_found(system: System) -> None:
    missing = str(uuid.uuid4())
    bad = await system.client.action(missing, {"os-extend": {"new_size": "x"}})
    assert bad.status == 400
    unknown = await system.client.action(missing, {"os-whatever": None})
    assert unknown.status == 400
    good = await system.client.action(missing, {"os-extend": {"new_size": 2}})
    assert good.status == 404
    assert good.json == {
        "itemNotFound": {"code": 404, "message": f"Volume {missing} could not be found."}
    }
    assert (
        await system.client.action("xxx", {"os-set_bootable": {"bootable": True}})
    ).status == 404


async def test_extend_rules_and_quota_change_nothing(system: System) -> None:
    volume = await system.available_volume(2)
    before = await event_count(system.pool, volume["id"])
    smaller = await system.client.action(volume["id"], {"os-extend": {"new_size": 2}})
    assert smaller.status == 400
    assert smaller.json["badRequest"]["message"] == (
        "Invalid input received: New size for extend must be greater than current size. "
        "(current: 2, extended: 2)."
    )
    over = await system.client.action(volume["id"], {"os-extend": {"new_size": 5000}})
    assert over.status == 413
    assert over.headers["Retry-After"] == "0"
    assert over.json["overLimit"]["message"].startswith("VolumeSizeExceedsAvailableQuota: ")
    assert await event_count(system.pool, volume["id"]) == before


async def test_quota_on_create_is_413(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex)
    too_big = await client.request("POST", "/volumes", body={"volume": {"size": 1001}})
    assert too_big.status == 413
    assert too_big.json["overLimit"]["message"].startswith("VolumeSizeExceedsAvailableQuota")
    for _ in range(10):
        await client.create_volume(1)
    eleventh = await client.request("POST", "/volumes", body={"volume": {"size": 1}})
    assert eleventh.status == 413
    assert eleventh.json["overLimit"]["message"] == (
        "VolumeLimitExceeded: Maximum number of volumes allowed (10) exceeded for quota 'volumes'."
    )


async def test_in_use_style_status_gate(system: System) -> None:
    """Extend needs 'available'; a volume mid-extend refuses another, at any microversion."""
    volume = await system.available_volume(1)
    system.faults("extend=delay:0.3")
    try:
        assert (
            await system.client.action(volume["id"], {"os-extend": {"new_size": 2}})
        ).status == 202
        latest = system.client.as_(version="latest")
        again = await latest.action(volume["id"], {"os-extend": {"new_size": 3}})
        assert again.status == 400
        assert again.json["badRequest"]["message"] == (
            f"Invalid volume: Volume {volume['id']} status must be '{{'status': 'available'}}' "
            "to extend, currently extending."
        )
        await system.until_status(volume["id"], "available")
    finally:
        system.faults("")
