"""User messages (3.3+) over HTTP: a failed extend or retype leaves a message built from
Cinder's Action and Detail fields with the request id of the request that started it;
Cinder's filters, sort and pagination; a delete that stays deleted through a replay;
another project's member gets 404."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from cinderblock.readmodels.message_queries import get_message
from cinderblock.replay.rebuild import replay
from cinderblock.replay.verify import verify
from tests.e2e.conftest import System
from tests.helpers.cinder import new_type, retyped, snapshot_of
from tests.helpers.client import CinderClient, Reply

MEMBER = "member,reader"
DRIVER_FAILED_EXTEND = "VOLUME_VOLUME_007_010"
NO_BACKEND_EXTEND = "VOLUME_VOLUME_007_003"


def member(system: System, version: str = "3.5") -> CinderClient:
    """A member of a new project (not admin: noauth with X-Roles)."""
    return system.client.as_(project_id=uuid.uuid4().hex, roles=MEMBER, version=version)


def request_id(reply: Reply) -> str:
    return next(v for k, v in reply.headers.items() if k.lower() == "x-openstack-request-id")


async def messages(client: CinderClient, query: str = "") -> list[dict[str, Any]]:
    reply = await client.request("GET", f"/messages{query}")
    assert reply.status == 200, reply.text
    found: list[dict[str, Any]] = reply.json["messages"]
    return found


async def message_of(system: System, client: CinderClient, vid: str) -> dict[str, Any]:
    """The one message about ``vid`` once the projector has it."""

    async def found() -> dict[str, Any] | None:
        listed = await messages(client, f"?resource_uuid={vid}")
        return listed[0] if listed else None

    message: dict[str, Any] = await system.projected.until(found)
    return message


async def failed_extend(system: System, client: CinderClient, fault: str) -> tuple[str, str]:
    """A volume of ``client``'s whose extend the driver fails with ``fault``; (volume id,
    the extend's request id)."""
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    system.faults(fault)
    try:
        reply = await client.action(vid, {"os-extend": {"new_size": 2}})
        assert reply.status == 202, reply.text
        await system.until_volume(vid, lambda v: v is not None and v["status"] != "extending")
    finally:
        system.faults("")
    return vid, request_id(reply)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_a_failed_extend_leaves_cinders_message(system: System) -> None:
    client = member(system)
    vid, started = await failed_extend(system, client, "extend=fail")
    assert (await client.volume(vid) or {})["status"] == "error_extending"
    message = await message_of(system, client, vid)
    assert message["event_id"] == DRIVER_FAILED_EXTEND
    assert message["user_message"] == "extend volume:Volume Driver failed to extend volume."
    assert message["message_level"] == "ERROR"
    assert (message["resource_type"], message["resource_uuid"]) == ("VOLUME", vid)
    assert message["request_id"] == started  # the request that started the failed work
    ttl = _time(message["guaranteed_until"]) - _time(message["created_at"])
    assert ttl == timedelta(seconds=2_592_000)
    mid = message["id"]
    base = system.url.rstrip("/")
    assert message["links"] == [
        {"href": f"{base}/v3/{client.project_id}/messages/{mid}", "rel": "self"},
        {"href": f"{base}/{client.project_id}/messages/{mid}", "rel": "bookmark"},
    ]
    shown = await client.request("GET", f"/messages/{mid}")
    assert (shown.status, shown.json) == (200, {"message": message})
    assert "injected" not in shown.text  # the driver's own words never reach the user

    # A capacity shortage hands the volume back (the scheduler's NoValidBackend).
    again, _ = await failed_extend(system, client, "extend=capacity")
    assert (await client.volume(again) or {})["status"] == "available"
    short = await message_of(system, client, again)
    assert short["event_id"] == NO_BACKEND_EXTEND
    assert short["user_message"] == ("extend volume:Could not find any available weighted backend.")


async def test_messages_need_3_3_and_stay_in_their_project(system: System) -> None:
    client = member(system)
    vid, _ = await failed_extend(system, client, "extend=fail")
    mid = (await message_of(system, client, vid))["id"]
    for version in ("3.0", "3.2"):
        old = client.as_(version=version)
        for method, path in (("GET", "/messages"), ("GET", f"/messages/{mid}")):
            reply = await old.request(method, path)
            assert reply.status == 404, (version, path, reply.text)
            assert reply.json == {
                "itemNotFound": {"code": 404, "message": "The resource could not be found."}
            }
        assert (await old.request("DELETE", f"/messages/{mid}")).status == 404
    assert (await client.as_(version="3.3").request("GET", f"/messages/{mid}")).status == 200

    stranger = member(system)
    for method in ("GET", "DELETE"):
        reply = await stranger.request(method, f"/messages/{mid}")
        assert reply.status == 404, reply.text
        assert reply.json["itemNotFound"]["message"] == f"Message {mid} could not be found."
    assert await messages(stranger) == []
    admin = system.client.as_(version="3.5")  # noauth without X-Roles: admin, every project
    assert (await admin.request("GET", f"/messages/{mid}")).status == 200
    reader = client.as_(roles="reader")
    assert (await reader.request("GET", f"/messages/{mid}")).status == 200
    refused = await reader.request("DELETE", f"/messages/{mid}")
    assert refused.status == 403, refused.text  # message:delete needs a member
    assert (await client.request("GET", "/messages/not-a-uuid")).status == 404


async def test_a_failed_retype_says_why_in_cinders_words(system: System) -> None:
    on_a = await new_type(system, extra_specs={"volume_backend_name": "file-a"})
    on_b = await new_type(system, extra_specs={"volume_backend_name": "file-b"})
    client = member(system)
    created = await client.create_volume(1, volume_type=on_a["name"])
    vid = (await system.until_status(created["id"], "available"))["id"]
    # migration_policy never, and the volume's backend does not suit the new type
    reply = await client.action(vid, {"os-retype": {"new_type": on_b["name"]}})
    assert reply.status == 202, reply.text
    kept = await retyped(system, vid)
    assert (kept["status"], kept["volume_type"]) == ("available", on_a["name"])
    message = await message_of(system, client, vid)
    assert message["event_id"] == "VOLUME_VOLUME_101_003"
    assert message["user_message"] == "retype volume:Could not find any available weighted backend."
    assert message["request_id"] == request_id(reply)

    # on-demand, but the volume has snapshots that would be left behind
    await snapshot_of(system, client, vid)
    body = {"os-retype": {"new_type": on_b["name"], "migration_policy": "on-demand"}}
    assert (await client.action(vid, body)).status == 202
    await retyped(system, vid)

    async def two() -> list[dict[str, Any]] | None:
        found = await messages(client, f"?resource_uuid={vid}&sort=created_at:asc")
        return found if len(found) == 2 else None

    first, second = await system.projected.until(two)
    assert first["id"] == message["id"]
    assert second["event_id"] == "VOLUME_VOLUME_101_027"
    assert second["user_message"] == "retype volume:Volume status is invalid."


async def test_filters_sort_and_pagination_as_cinders(system: System) -> None:
    client = member(system)
    made = [(await failed_extend(system, client, "extend=fail"))[0] for _ in range(3)]
    capacity, _ = await failed_extend(system, client, "extend=capacity")

    async def all_four() -> list[dict[str, Any]] | None:
        found = await messages(client)
        return found if len(found) == 4 else None

    newest_first = await system.projected.until(all_four)
    assert [m["resource_uuid"] for m in newest_first] == [capacity, *reversed(made)]
    oldest_first = await messages(client, "?sort=created_at:asc")
    assert oldest_first == list(reversed(newest_first))
    assert await messages(client, "?sort_key=created_at&sort_dir=asc") == oldest_first

    # limit and marker (3.5): a next link with the same query and the last id as marker
    reply = await client.request("GET", "/messages?limit=3")
    page = reply.json
    assert [m["id"] for m in page["messages"]] == [m["id"] for m in newest_first[:3]]
    (link,) = page["messages_links"]
    assert link["rel"] == "next"
    assert f"marker={newest_first[2]['id']}" in link["href"]
    assert "limit=3" in link["href"]
    rest = await client.request("GET", "", url=link["href"])
    assert [m["id"] for m in rest.json["messages"]] == [newest_first[3]["id"]]
    assert "messages_links" not in rest.json
    assert await messages(client, "?offset=1&limit=2") == newest_first[1:3]

    # filters Cinder enables for messages; key~ (LIKE) from 3.34
    assert await messages(client, f"?event_id={NO_BACKEND_EXTEND}") == newest_first[:1]
    assert len(await messages(client, f"?event_id={DRIVER_FAILED_EXTEND}")) == 3
    assert len(await messages(client, "?message_level=ERROR&resource_type=VOLUME")) == 4
    assert await messages(client.as_(version="3.34"), "?event_id~=007_003") == newest_first[:1]

    # a non-admin's unknown filter: 400 from 3.31, an empty list below (no such column)
    strict = await client.as_(version="3.31").request("GET", "/messages?colour=red")
    assert strict.status == 400
    assert strict.json["badRequest"]["message"] == (
        "Invalid filters colour are found in query options."
    )
    assert await messages(client.as_(version="3.30"), "?colour=red") == []
    like_early = await client.as_(version="3.33").request("GET", "/messages?event_id~=007")
    assert like_early.status == 400
    all_tenants = await client.as_(version="3.31").request("GET", "/messages?all_tenants=1")
    assert all_tenants.status == 200  # cinderclient adds it; Cinder drops it

    # below 3.5: every message, newest first, the query ignored
    assert await messages(client.as_(version="3.3"), "?limit=1&event_id=x") == newest_first

    for query, text in (
        ("?limit=x", "limit param must be an integer"),
        ("?limit=-1", "limit param must be positive"),
        ("?offset=-1", "offset must be >= 0"),
        (
            "?sort=created_at:up",
            "Invalid input received: Unknown sort direction, must be 'desc' or 'asc'.",
        ),
        ("?sort=colour", "Invalid input received: Invalid sort key"),
        (
            "?sort=id&sort_key=id",
            "The 'sort_key' and 'sort_dir' parameters are deprecated "
            "and cannot be used with the 'sort' parameter.",
        ),
    ):
        reply = await client.request("GET", f"/messages{query}")
        assert (reply.status, reply.json["badRequest"]["message"]) == (400, text), query
    missing = str(uuid.uuid4())
    reply = await client.request("GET", f"/messages?marker={missing}")
    assert reply.status == 404
    assert reply.json["itemNotFound"]["message"] == f"Message {missing} could not be found."


async def test_a_deleted_message_stays_deleted_through_a_replay(system: System) -> None:
    client = member(system)
    vid, _ = await failed_extend(system, client, "extend=fail")
    kept_vid, _ = await failed_extend(system, client, "extend=fail")
    mid = (await message_of(system, client, vid))["id"]
    kept = (await message_of(system, client, kept_vid))["id"]
    reply = await client.request("DELETE", f"/messages/{mid}")
    assert (reply.status, reply.text) == (204, "")
    assert (await client.request("GET", f"/messages/{mid}")).status == 404
    assert [m["id"] for m in await messages(client)] == [kept]
    again = await client.request("DELETE", f"/messages/{mid}")
    assert again.status == 404, again.text
    assert again.json["itemNotFound"]["message"] == f"Message {mid} could not be found."

    dsn = system.settings.database_url
    checked = await verify(dsn, ("messages",))
    assert checked.identical, [str(d) for d in checked.differences]
    await replay(dsn, ("messages",))
    assert (await client.request("GET", f"/messages/{mid}")).status == 404
    assert [m["id"] for m in await messages(client)] == [kept]
    async with system.pool.acquire() as conn:
        assert await get_message(conn, mid, project_id=None) is None
        row = await conn.fetchrow(
            "SELECT deleted, deleted_at FROM messages WHERE id = $1", uuid.UUID(mid)
        )
    assert row is not None
    assert row["deleted"]
    assert row["deleted_at"] is not None
    assert (await verify(dsn, ("messages",))).identical


async def test_a_failed_snapshot_leaves_a_message_about_the_snapshot(system: System) -> None:
    client = member(system)
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    system.faults("snapshot=fail")
    try:
        reply = await client.request("POST", "/snapshots", body={"snapshot": {"volume_id": vid}})
        assert reply.status == 202, reply.text
        sid = reply.json["snapshot"]["id"]

        async def errored() -> bool:
            shown = await client.request("GET", f"/snapshots/{sid}")
            return bool(shown.json["snapshot"]["status"] == "error")

        await system.projected.until(errored)
    finally:
        system.faults("")
    message = await message_of(system, client, sid)
    assert (message["resource_type"], message["resource_uuid"]) == ("VOLUME_SNAPSHOT", sid)
    assert message["event_id"] == "VOLUME_VOLUME_SNAPSHOT_009_013"
    assert message["user_message"] == "create snapshot:Snapshot failed to create."
    assert message["request_id"] == request_id(reply)
    assert await messages(client, "?resource_type=VOLUME_SNAPSHOT") == [message]
    assert (await client.request("DELETE", f"/messages/{message['id']}")).status == 204
    assert await messages(client, f"?resource_uuid={sid}") == []
    names = await system.pool.fetch(
        "SELECT topic FROM events WHERE originator_id = $1 ORDER BY originator_version",
        uuid.UUID(sid),
    )
    assert names[-1]["topic"].endswith(":Snapshot.MessageDeleted")
