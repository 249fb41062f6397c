"""`cinderblock history` and `cinderblock audit` say why: the reason a failed extend
recorded and the user message it left, and the fault of a refused one."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from cinderblock.drivers.faults import INJECTED_REASON
from tests.e2e.conftest import System
from tests.e2e.test_audit_cli import cli

__all__ = ["cli"]  # the fixture, used below

SMALLER = "New size for extend must be greater than current size."


async def _rows(cli: Any, vid: str) -> list[dict[str, Any]]:
    code, out = await cli("history", vid, "--json")
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines()]


async def test_history_and_audit_show_why_an_extend_failed(system: System, cli: Any) -> None:
    c = system.client.as_(project_id=uuid.uuid4().hex, roles="member,reader", version="3.5")
    vid = (await c.create_volume(1))["id"]
    await system.until_status(vid, "available")
    refused = await c.action(vid, {"os-extend": {"new_size": 1}})
    assert refused.status == 400, refused.text
    fault = refused.json["badRequest"]["message"]
    system.faults("extend=fail")
    try:
        failed = await c.action(vid, {"os-extend": {"new_size": 2}})
        assert failed.status == 202, failed.text
        await system.until_status(vid, "error_extending")
    finally:
        system.faults("")
    failed_id = failed.headers["x-openstack-request-id"]
    listed = await c.request("GET", f"/messages?resource_uuid={vid}")
    (message,) = listed.json["messages"]

    async def refusal_kept() -> list[dict[str, Any]] | None:  # the request log writes behind
        rows = await _rows(cli, vid)
        return rows if any(r["event"].startswith("refused") for r in rows) else None

    rows = await system.projected.until(refusal_kept)
    by_event = {r["event"]: r for r in rows}
    failure = by_event["Volume.ExtendFailed"]
    assert failure["reason"] == INJECTED_REASON
    assert failure["request_id"] == failed_id
    assert failure["user_message"] == {
        "id": message["id"],
        "event_id": "VOLUME_VOLUME_007_010",
        "user_message": "extend volume:Volume Driver failed to extend volume.",
    }
    assert by_event["Volume.Created"]["reason"] is None
    assert by_event["Volume.Created"]["user_message"] is None
    (refusal,) = [r for r in rows if r["event"].startswith("refused")]
    assert refusal["event"] == "refused os-extend (400)"
    assert (refusal["version"], refusal["aggregate"]) == (None, "volume")
    assert refusal["reason"] == fault
    assert SMALLER in fault
    assert refusal["request_id"] == refused.headers["x-openstack-request-id"]

    code, table = await cli("history", vid)
    assert code == 0
    assert table.splitlines()[0].split()[-2:] == ["CHANGES", "REASON"]
    (line,) = [x for x in table.splitlines() if "Volume.ExtendFailed" in x]
    assert line.endswith(f"{INJECTED_REASON} [VOLUME_VOLUME_007_010]")
    (line,) = [x for x in table.splitlines() if "refused os-extend" in x]
    assert line.endswith(fault)

    since = (datetime.now().astimezone() - timedelta(hours=1)).isoformat()
    code, out = await cli("audit", "--since", since, "--project", c.project_id)
    assert code == 0, out
    records = {r["initiator"]["request_id"]: r for r in json.loads(out)}
    extend = records[failed_id]
    (outcome,) = [a["content"] for a in extend["attachments"] if a["name"] == "async_outcome"]
    (saga,) = [o for o in outcome if o["event"] == "Volume.ExtendFailed"]
    assert saga["reason"] == INJECTED_REASON
    assert saga["user_message"]["event_id"] == "VOLUME_VOLUME_007_010"
    said_no = records[refused.headers["x-openstack-request-id"]]
    assert said_no["outcome"] == "failure"
    assert [a["content"] for a in said_no["attachments"] if a["name"] == "fault"] == [fault]
