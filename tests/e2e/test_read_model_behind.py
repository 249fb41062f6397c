"""A read model that is behind never turns a stored command into an error: with no projector
running, commands answer their 202/200 with the body they would have had (built from the
log), the lag is logged, and once the projector runs the read model shows the same."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from cinderblock.api import app as api
from cinderblock.audit import state
from cinderblock.audit.log import aggregate_events
from cinderblock.config.settings import Settings
from cinderblock.projector import run as projector
from cinderblock.readmodels.queries import get_attachment, get_snapshot, get_type, get_volume
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.volumes import Volumes
from tests.helpers.client import CinderClient, Reply
from tests.helpers.servers import Projected, Servers, fresh_database, listening, make_settings


@dataclass
class Behind:
    """The API alone on its own database: nothing projects until ``start_projector``."""

    settings: Settings
    client: CinderClient
    pool: asyncpg.Pool
    projected: Projected
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]

    def start_projector(self) -> None:
        self.tasks.append(asyncio.create_task(projector.run(self.settings, stop=self.stop)))

    async def until_shown(self, path: str, client: CinderClient | None = None) -> Reply:
        c = client or self.client

        async def check() -> Reply | None:
            reply = await c.request("GET", path)
            return reply if reply.status == 200 else None

        found: Reply = await self.projected.until(check)
        return found


@pytest_asyncio.fixture
async def behind(servers: Servers, session_tag: str, data_dir: Path) -> AsyncIterator[Behind]:
    async with fresh_database(servers) as url:
        settings = make_settings(url, servers.nats_url, f"{session_tag}B", data_dir)
        settings = settings.model_copy(update={"read_wait": 0.2})
        stop = asyncio.Event()
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        tasks = [asyncio.create_task(api.run(settings, stop=stop, ready=ready.set_result))]
        try:
            base = await asyncio.wait_for(asyncio.shield(ready), 30)
            async with (
                asyncpg.create_pool(url, min_size=1, max_size=4) as pool,
                listening(pool) as projected,
                aiohttp.ClientSession() as session,
            ):
                client = CinderClient(session, base)
                yield Behind(settings, client, pool, projected, stop, tasks)
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 30)


def same_on_shared_keys(answered: dict[str, Any], shown: dict[str, Any]) -> None:
    shared = answered.keys() & shown.keys()
    assert shared
    assert {k: answered[k] for k in shared} == {k: shown[k] for k in shared}


async def test_commands_answer_from_the_log_while_nothing_projects(
    behind: Behind, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cinderblock.api.deps")
    c = behind.client
    created = await c.request(
        "POST", "/volumes", body={"volume": {"size": 1, "name": "behind", "metadata": {"k": "v"}}}
    )
    assert created.status == 202, created.text
    volume = created.json["volume"]
    vid = volume["id"]
    assert (volume["name"], volume["size"], volume["status"]) == ("behind", 1, "creating")
    assert (volume["metadata"], volume["updated_at"], volume["volume_type"]) == (
        {"k": "v"},
        None,
        "__DEFAULT__",
    )
    assert volume["links"][0]["href"].endswith(f"/volumes/{vid}")
    assert (await c.show(vid)).status == 404  # the read model has not got it
    lagged = [r for r in caplog.records if r.getMessage().startswith("read model behind")]
    assert lagged
    assert getattr(lagged[-1], "volume_id", None) == vid
    assert getattr(lagged[-1], "request_id", "") == created.headers["x-openstack-request-id"]
    assert getattr(lagged[-1], "action", None) == f"POST /v3/{c.project_id}/volumes"
    assert getattr(lagged[-1], "waited_s", 0) >= 0.2

    # A second volume nothing else touches: its create answer is what GET shows later.
    untouched = await c.request("POST", "/volumes", body={"volume": {"size": 2}})
    assert untouched.status == 202, untouched.text

    renamed = await c.request("PUT", f"/volumes/{vid}", body={"volume": {"name": "renamed"}})
    assert renamed.status == 200, renamed.text
    assert renamed.json["volume"]["name"] == "renamed"
    assert renamed.json["volume"]["updated_at"] is not None

    # What the create saga records (no saga runs here): the volume has a host and is available.
    done = await Volumes(AsyncEventStore(behind.pool)).complete_create(
        vid, "cinderblock@file#default", meta={"actor": "saga:test"}
    )
    assert done
    status = await c.action(vid, {"os-update_readonly_flag": {"readonly": False}})
    assert status.status == 202, status.text
    bootable = await c.action(vid, {"os-set_bootable": {"bootable": True}})
    assert bootable.status == 200, bootable.text
    metadata = await c.request("POST", f"/volumes/{vid}/metadata", body={"metadata": {"a": "b"}})
    assert metadata.status == 200, metadata.text
    assert metadata.json == {"metadata": {"k": "v", "a": "b"}}
    image = await c.action(vid, {"os-set_image_metadata": {"metadata": {"img": "x"}}})
    assert image.status == 200, image.text

    snap = await c.request("POST", "/snapshots", body={"snapshot": {"volume_id": vid}})
    assert snap.status == 202, snap.text
    sid = snap.json["snapshot"]["id"]
    assert (snap.json["snapshot"]["status"], snap.json["snapshot"]["size"]) == ("creating", 1)
    snap_renamed = await c.request(
        "PUT", f"/snapshots/{sid}", body={"snapshot": {"name": "snap-renamed"}}
    )
    assert snap_renamed.status == 200, snap_renamed.text
    assert snap_renamed.json["snapshot"]["name"] == "snap-renamed"

    v327 = c.as_(version="3.27")
    attached = await v327.request(
        "POST",
        "/attachments",
        body={"attachment": {"volume_uuid": vid, "instance_uuid": str(uuid.uuid4())}},
    )
    assert attached.status == 200, attached.text
    attachment = attached.json["attachment"]
    assert (attachment["volume_id"], attachment["status"]) == (vid, "reserved")

    vtype = await c.request("POST", "/types", body={"volume_type": {"name": "behind-type"}})
    assert vtype.status == 200, vtype.text
    tid = vtype.json["volume_type"]["id"]
    assert vtype.json["volume_type"]["name"] == "behind-type"
    described = await c.request(
        "PUT", f"/types/{tid}", body={"volume_type": {"description": "later"}}
    )
    assert described.status == 200, described.text
    assert described.json["volume_type"]["description"] == "later"

    quotas = await c.request(
        "PUT", f"/os-quota-sets/{c.project_id}", body={"quota_set": {"volumes": 25}}
    )
    assert quotas.status == 200, quotas.text
    assert quotas.json["quota_set"]["volumes"] == 25

    # Now the projector runs: the read model shows what the answers said.
    behind.start_projector()
    shown = (await behind.until_shown(f"/volumes/{vid}")).json["volume"]
    assert (shown["name"], shown["status"], shown["bootable"]) == ("renamed", "reserved", "true")
    assert shown["metadata"] == {"k": "v", "a": "b", "readonly": "False"}  # admin's merged
    assert shown["volume_image_metadata"] == {"img": "x"}
    assert shown["created_at"] == volume["created_at"]
    answered = untouched.json["volume"]
    same_on_shared_keys(answered, (await c.show(answered["id"])).json["volume"])
    snapshot_shown = (await c.request("GET", f"/snapshots/{sid}")).json["snapshot"]
    same_on_shared_keys(snap_renamed.json["snapshot"], snapshot_shown)
    same_on_shared_keys(
        attachment,
        (await v327.request("GET", f"/attachments/{attachment['id']}")).json["attachment"],
    )
    type_shown = (await c.request("GET", f"/types/{tid}")).json["volume_type"]
    same_on_shared_keys(described.json["volume_type"], type_shown)
    limits = await c.request("GET", f"/os-quota-sets/{c.project_id}")
    assert limits.json["quota_set"]["volumes"] == 25

    # Row for row: what the answers were built from is what the projector wrote.
    async with behind.pool.acquire() as conn:
        for_volume = await state.rows(conn, await aggregate_events(conn, [uuid.UUID(vid)]))
        assert for_volume.volume(vid) == await get_volume(conn, vid, project_id=None)
        from_log = for_volume.attachments(vid)
        assert from_log == [await get_attachment(conn, attachment["id"], project_id=None)]
        snapshot_events = await aggregate_events(conn, [uuid.UUID(sid)])
        from_snapshot_log = (await state.rows(conn, snapshot_events)).snapshot(sid)
        assert from_snapshot_log == await get_snapshot(conn, sid, project_id=None)
        type_events = await aggregate_events(conn, [uuid.UUID(tid)])
        assert (await state.rows(conn, type_events)).volume_type(tid) == await get_type(conn, tid)
