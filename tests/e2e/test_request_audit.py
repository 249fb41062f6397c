"""CADF records for every request, as keystonemiddleware's audit middleware records them:
reads and refusals too (which append no event), each with the outcome of its HTTP answer,
while an accepted request keeps its events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cinderblock.audit.requests import window_records
from tests.e2e.conftest import System
from tests.helpers.request_log import until_kept

VOLUME = "service/storage/block/volumes/volume"


def _attachment(record: dict[str, Any], name: str) -> Any:
    return next((a["content"] for a in record["attachments"] if a["name"] == name), None)


async def test_reads_and_refusals_are_audited_with_their_outcome(system: System) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    owner = system.client.as_(project_id=uuid.uuid4().hex, user_id="bob")
    created = await owner.request("POST", "/volumes", body={"volume": {"size": 1}})
    assert created.status == 202, created.text
    vid = created.json["volume"]["id"]
    await system.until_status(vid, "available")
    missing = str(uuid.uuid4())
    replies = {
        "read": await owner.show(vid),
        "missing": await owner.request("GET", f"/volumes/{missing}"),
        "forbidden": await owner.as_(roles="reader").action(vid, {"os-extend": {"new_size": 2}}),
        "listed": await owner.request("GET", "/volumes/detail?limit=1"),
        # Refused at the edge (U+0000): what the stores cannot hold is kept escaped.
        "unstorable": await owner.request("GET", "/volumes/a%00b"),
    }
    assert [r.status for r in replies.values()] == [200, 404, 403, 200, 400]
    ids = {name: r.headers["x-openstack-request-id"] for name, r in replies.items()}
    await until_kept(system.pool, created.headers["x-openstack-request-id"], *ids.values())

    async with system.pool.acquire() as conn:
        found = await window_records(conn, since, None, project_id=owner.project_id)
        every = await window_records(conn, since, None)
    by_id = {r["initiator"]["request_id"]: r for r in found}
    assert len(found) == len(by_id) == 5  # the edge refused one before reading the project
    unstorable = next(r for r in every if r["initiator"]["request_id"] == ids["unstorable"])
    assert (unstorable["outcome"], unstorable["reason"]["reasonCode"]) == ("failure", "400")
    assert unstorable["requestPath"].endswith("/volumes/a%00b")  # as sent, like webob's
    assert unstorable["target"]["id"] == "a\\u0000b"  # decoded: kept JSON-escaped
    assert unstorable["initiator"]["project_id"] == "unknown"

    def summary(name: str) -> tuple[str, str, str, dict[str, str]]:
        r = by_id[ids[name]]
        return r["action"], r["outcome"], r["reason"]["reasonCode"], r["target"]

    assert summary("read") == ("read", "success", "200", {"typeURI": VOLUME, "id": vid})
    assert summary("missing") == ("read", "failure", "404", {"typeURI": VOLUME, "id": missing})
    assert summary("forbidden") == (
        "update/os-extend",
        "failure",
        "403",
        {"typeURI": VOLUME, "id": vid},
    )
    assert summary("listed") == (
        "list",
        "success",
        "200",
        {"typeURI": "service/storage/block/volumes", "id": "unknown"},
    )
    assert _attachment(by_id[ids["missing"]], "fault") == f"Volume {missing} could not be found."
    assert "volume:extend" in _attachment(by_id[ids["forbidden"]], "fault")
    assert by_id[ids["forbidden"]]["initiator"]["roles"] == ["reader"]
    assert by_id[ids["listed"]]["requestPath"].endswith("/volumes/detail?limit=1")
    for r in found:
        assert r["initiator"]["id"] == "bob"
        assert r["observer"] == {"id": "target", "name": "cinderblock"}
        assert r["reason"]["reasonType"] == "HTTP"

    # The accepted create keeps its events and the saga's outcome beside the HTTP one.
    create = by_id[created.headers["x-openstack-request-id"]]
    assert (create["action"], create["outcome"], create["reason"]["reasonCode"]) == (
        "create",
        "success",
        "202",
    )
    assert create["target"] == {"typeURI": VOLUME, "id": vid}
    assert f"Volume.Created@{vid}:1" in _attachment(create, "events")
    later = [o["event"] for o in _attachment(create, "async_outcome")]
    assert later[:1] == ["Volume.CreateCompleted"]
    assert found[0] is create  # records are in time order
