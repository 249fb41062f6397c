"""The attachment safety check asks Nova when one is configured (spec §7.1, Cinder bug
#2004555): a user pulling an attachment connected to an instance gets 409 while Nova still
uses it, is allowed when Nova knows it no more, and gets 503 (nothing changed) when Nova
cannot be asked; a service (Nova itself) is never checked. A second API process runs with
CINDERBLOCK_NOVA_URL set, on the e2e system's database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest_asyncio

from cinderblock.api import app as api
from tests.e2e.conftest import System
from tests.helpers.client import CinderClient
from tests.helpers.fake_nova import FakeNova


@dataclass
class Guarded:
    client: CinderClient  # admin, talking to the API that asks Nova
    nova: FakeNova


@pytest_asyncio.fixture(scope="module")
async def guarded(system: System) -> AsyncIterator[Guarded]:
    nova = FakeNova()
    url = await nova.start()
    settings = system.settings.model_copy(
        update={"port": 0, "nova_url": url, "nova_token": "svc:svc", "nova_timeout": 1.0}
    )
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(api.run(settings, stop=stop, ready=ready.set_result))
    try:
        base = await asyncio.wait_for(asyncio.shield(ready), 30)
        async with aiohttp.ClientSession() as session:
            yield Guarded(CinderClient(session, base), nova)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await nova.stop()


async def connected(system: System, g: Guarded) -> tuple[CinderClient, str, str, str]:
    """A volume with one attachments-API attachment connected to an instance (3.44)."""
    owner = g.client.as_(project_id=uuid.uuid4().hex, version="3.44")
    created = await owner.create_volume(1)
    await system.until_status(created["id"], "available")
    server = str(uuid.uuid4())
    body = {"attachment": {"volume_uuid": created["id"], "instance_uuid": server}}
    reply = await owner.request("POST", "/attachments", body=body)
    assert reply.status == 200, reply.text
    aid = reply.json["attachment"]["id"]
    connector = {"host": "compute-1", "mountpoint": "/dev/vdb", "initiator": "iqn.x"}
    reply = await owner.request(
        "PUT", f"/attachments/{aid}", body={"attachment": {"connector": connector}}
    )
    assert reply.status == 200, reply.text
    return owner, created["id"], server, aid


async def attachment_ids(client: CinderClient, volume_id: str) -> list[str]:
    reply = await client.as_(version="3.44").request("GET", f"/attachments?volume_id={volume_id}")
    assert reply.status == 200, reply.text
    rows: list[dict[str, Any]] = reply.json["attachments"]
    return [a["id"] for a in rows]


async def test_nova_still_using_the_attachment_is_409(system: System, guarded: Guarded) -> None:
    owner, vid, server, aid = await connected(system, guarded)
    guarded.nova.volume_attachments[(server, vid)] = aid
    member = owner.as_(roles="member,reader")
    reply = await member.request("DELETE", f"/attachments/{aid}")
    assert reply.status == 409, reply.text
    assert "ConflictNovaUsingAttachment" in reply.json["conflictingRequest"]["message"]
    assert server in reply.json["conflictingRequest"]["message"]
    reply = await member.as_(version="3.0").action(vid, {"os-detach": {"attachment_id": aid}})
    assert reply.status == 409, reply.text
    assert await attachment_ids(owner, vid) == [aid]  # nothing changed
    server_asked, volume_asked, headers = guarded.nova.lookups[-1]
    assert (server_asked, volume_asked) == (server, vid)
    assert headers["X-OpenStack-Nova-API-Version"] == "2.89"
    assert headers["X-Auth-Token"] == "svc:svc"
    # Nova itself (a service) is not asked and may delete it.
    asked = len(guarded.nova.lookups)
    service = owner.as_(roles="service,member,reader")
    assert (await service.request("DELETE", f"/attachments/{aid}")).status == 200
    assert len(guarded.nova.lookups) == asked
    assert await attachment_ids(owner, vid) == []


async def test_nova_not_knowing_the_attachment_allows_it(system: System, guarded: Guarded) -> None:
    owner, vid, _, aid = await connected(system, guarded)
    member = owner.as_(roles="member,reader")
    assert (await member.request("DELETE", f"/attachments/{aid}")).status == 200
    assert await attachment_ids(owner, vid) == []


async def test_nova_with_another_attachment_id_allows_it(system: System, guarded: Guarded) -> None:
    owner, vid, server, aid = await connected(system, guarded)
    guarded.nova.volume_attachments[(server, vid)] = str(uuid.uuid4())
    reply = await owner.as_(version="3.0").action(vid, {"os-detach": {"attachment_id": aid}})
    assert reply.status == 202, reply.text
    assert await attachment_ids(owner, vid) == []


async def test_nova_unreachable_is_503_and_changes_nothing(
    system: System, guarded: Guarded
) -> None:
    owner, vid, _, aid = await connected(system, guarded)
    guarded.nova.attachments_down = True
    try:
        reply = await owner.request("DELETE", f"/attachments/{aid}")
    finally:
        guarded.nova.attachments_down = False
    assert reply.status == 503, reply.text
    assert await attachment_ids(owner, vid) == [aid]


async def test_nobody_else_learns_anything_from_nova(system: System, guarded: Guarded) -> None:
    """Another project's caller gets the command's own 404 before Nova is asked."""
    _, vid, server, aid = await connected(system, guarded)
    guarded.nova.volume_attachments[(server, vid)] = aid
    asked = len(guarded.nova.lookups)
    stranger = guarded.client.as_(project_id=uuid.uuid4().hex, roles="member,reader")
    reply = await stranger.action(vid, {"os-detach": {"attachment_id": aid}})
    assert reply.status == 404, reply.text
    assert len(guarded.nova.lookups) == asked


async def test_swap_completion_asks_nova_for_each_attachment_it_moves(
    system: System, guarded: Guarded
) -> None:
    """Cinder's swap detaches through its API's detach: a user's completion is refused
    while Nova uses the old volume's attachment (nothing moves); Nova itself (a service)
    completes it."""
    owner, vid, server, aid = await connected(system, guarded)
    guarded.nova.volume_attachments[(server, vid)] = aid
    new = (await owner.create_volume(1))["id"]
    await system.until_status(new, "available")
    body = {"os-migrate_volume_completion": {"new_volume": new}}

    refused = await owner.action(vid, body)

    assert refused.status == 409, refused.text
    assert server in refused.json["conflictingRequest"]["message"]
    assert await attachment_ids(owner, vid) == [aid]
    assert await attachment_ids(owner, new) == []
    asked = len(guarded.nova.lookups)
    done = await owner.as_(roles="admin,service").action(vid, body)
    assert (done.status, done.json) == (200, {"save_volume_id": new})
    assert len(guarded.nova.lookups) == asked
    assert await attachment_ids(owner, vid) == []
    [moved] = await attachment_ids(owner, new)
    assert moved != aid
    assert (await owner.volume(new) or {})["status"] == "in-use"
