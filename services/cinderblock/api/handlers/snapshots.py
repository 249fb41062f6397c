"""Snapshots: create, show, list (summary and detail), update, delete; and the revert action
(3.40+), which returns a volume to its newest snapshot."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from cinderblock.api import written
from cinderblock.api.body import json_body
from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps, deps
from cinderblock.api.middleware import RAW_REPLY, context
from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.volume import Volume
from cinderblock.readmodels.queries import SNAPSHOT_FILTERS, get_snapshot, list_snapshots
from cinderblock.wire.faults import BadRequest, NotFound
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.snapshots import (
    Revert,
    SnapshotCreateRequest,
    SnapshotUpdateRequest,
    snapshot_summary,
    snapshot_view,
)

IN_USE_WITHOUT_FORCE = APIVersion(3, 66)
REVERT_RULE = "volume:revert_to_snapshot"
MAX_LIMIT = 1000


def _rule(d: Deps, ctx: RequestContext, rule: str, project_id: str) -> None:
    d.policy.authorize(rule, ctx.credentials, {"project_id": project_id})


def snapshot_not_found(snapshot_id: str) -> NotFound:
    return NotFound(f"Snapshot {snapshot_id} could not be found.")


async def _shown(d: Deps, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
    row = await get_snapshot(
        d.pool, snapshot_id, project_id=None if ctx.is_admin else ctx.project_id
    )
    if row is None or not d.policy.allowed(
        "volume:get_snapshot", ctx.credentials, {"project_id": row["project_id"]}
    ):
        raise snapshot_not_found(snapshot_id)
    return row


async def create(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    req = SnapshotCreateRequest.parse(await json_body(request), ctx.version)
    snapshot_id = uuid.uuid4()

    def authorize(volume: Volume) -> None:
        _rule(d, ctx, "volume:create_snapshot", volume.project_id)

    at = await d.volumes.create_snapshot(
        ctx.caller,
        req.volume_id,
        snapshot_id,
        name=req.name,
        description=req.description,
        metadata=req.metadata,
        force=bool(req.force),
        in_use_ok=ctx.version.matches(IN_USE_WITHOUT_FORCE),
        meta=ctx.meta("snapshot:create"),
        authorize=authorize,
    )
    row = await written.snapshot_row(d, at, str(snapshot_id), volume_id=req.volume_id)
    return web.json_response({"snapshot": snapshot_view(row, ctx.view, extended=False)}, status=202)


async def show(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    row = await _shown(d, ctx, request.match_info["snapshot_id"])
    return web.json_response({"snapshot": snapshot_view(row, ctx.view, extended=True)})


async def _list(request: web.Request, *, detail: bool) -> web.Response:
    d, ctx = deps(request), context(request)
    _rule(d, ctx, "volume:get_all_snapshots", ctx.project_id)
    query = request.query
    all_tenants = ctx.is_admin and "all_tenants" in query
    try:
        limit = min(int(query.get("limit", MAX_LIMIT)), MAX_LIMIT)
    except ValueError:
        raise BadRequest("limit param must be an integer") from None
    if limit < 0:
        raise BadRequest("limit param must be positive")
    filters = {k: v for k, v in query.items() if k in SNAPSHOT_FILTERS}
    try:
        rows = await list_snapshots(
            d.pool,
            project_id=None if all_tenants else ctx.project_id,
            filters=filters,
            limit=limit,
            marker=query.get("marker"),
        )
    except LookupError as err:
        raise NotFound(f"Marker {err.args[0]} could not be found.") from err
    views = [
        snapshot_view(r, ctx.view, extended=True) if detail else snapshot_summary(r, ctx.view)
        for r in rows
    ]
    body: dict[str, Any] = {"snapshots": views}
    if rows and len(rows) == limit:
        url = request.url.update_query({"limit": str(limit), "marker": rows[-1]["id"]})
        body["snapshots_links"] = [{"href": str(url), "rel": "next"}]
    return web.json_response(body)


async def index(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def update(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    snapshot_id = request.match_info["snapshot_id"]
    req = SnapshotUpdateRequest.parse(await json_body(request), ctx.version)

    def authorize(snapshot: Snapshot) -> None:
        _rule(d, ctx, "volume:update_snapshot", snapshot.project_id)

    at, _ = await d.volumes.snapshot_act(
        ctx.caller,
        snapshot_id,
        lambda s: s.update(req.changes),
        meta=ctx.meta("snapshot:update"),
        authorize=authorize,
    )
    row = await written.snapshot_row(d, at, snapshot_id)
    return web.json_response({"snapshot": snapshot_view(row, ctx.view, extended=False)})


async def delete(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    snapshot_id = request.match_info["snapshot_id"]

    def authorize(snapshot: Snapshot) -> None:
        _rule(d, ctx, "volume:delete_snapshot", snapshot.project_id)

    at, _ = await d.volumes.snapshot_act(
        ctx.caller,
        snapshot_id,
        Snapshot.request_delete,
        meta=ctx.meta("snapshot:delete"),
        authorize=authorize,
    )
    await d.read_your_write(at)
    request[RAW_REPLY] = True
    return web.Response(status=202)


async def revert(d: Deps, ctx: RequestContext, volume_id: str, req: Revert) -> web.Response:
    """revert (3.40+) → 202; the saga writes the snapshot's bytes back."""

    def authorize(volume: Volume) -> None:
        _rule(d, ctx, REVERT_RULE, volume.project_id)

    at = await d.volumes.revert_volume(
        ctx.caller, volume_id, req.snapshot_id, meta=ctx.meta("revert"), authorize=authorize
    )
    await d.read_your_write(at)
    return web.Response(status=202)
