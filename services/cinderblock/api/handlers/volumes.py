"""Volumes: create, show, list (summary and detail), delete. Queries read only the read
models; commands go through the Volumes service and wait for their projection."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from cinderblock.api import written
from cinderblock.api.body import json_body
from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps, deps
from cinderblock.api.handlers.listing import parse_list_query
from cinderblock.api.handlers.volume_sources import resolve_image, resolve_source
from cinderblock.api.middleware import RAW_REPLY, context
from cinderblock.domain.errors import InvalidVolumeError
from cinderblock.domain.volume_encryption import MULTIATTACH_ENCRYPTED
from cinderblock.readmodels.queries import count_volumes, get_volume, list_volumes
from cinderblock.store.volumes import DEFAULT_TYPE_NAME
from cinderblock.wire.faults import (
    BadRequest,
    NotFound,
    invalid_input,
    volume_not_found,
)
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.schema import SchemaError, parse_query_bool
from cinderblock.wire.views import volume_detail, volume_summary
from cinderblock.wire.volumes import VolumeCreateRequest, VolumeUpdateRequest

FORCE_DELETE = APIVersion(3, 23)
WITH_COUNT = APIVersion(3, 45)


def _authorize(d: Deps, ctx: RequestContext, rule: str, project_id: str) -> None:
    d.policy.authorize(rule, ctx.credentials, {"project_id": project_id})


async def create(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    req = VolumeCreateRequest.parse(await json_body(request), ctx.version)
    _authorize(d, ctx, "volume:create", ctx.project_id)
    source = await resolve_source(d, ctx, req)
    image = await resolve_image(d, req.image_ref) if req.image_ref is not None else None
    if req.backup_id is not None:
        raise NotFound(f"Backup {req.backup_id} could not be found.")
    zone = req.availability_zone or d.settings.default_availability_zone
    if zone != d.settings.default_availability_zone:
        raise invalid_input(f"Availability zone '{zone}' is invalid.")
    if source is not None:
        vtype, size = source.vtype, source.size_gb
    elif req.size is None:
        raise invalid_input("Volume size is required.")
    else:
        vtype, size = (
            await d.volumes.find_type(
                req.volume_type or DEFAULT_TYPE_NAME,
                project_id=ctx.project_id,
                is_admin=ctx.is_admin,
            ),
            req.size,
        )
    vtype.check_size(size)
    if vtype.multiattach and vtype.encrypted:
        raise InvalidVolumeError(MULTIATTACH_ENCRYPTED)
    if vtype.multiattach:
        _authorize(d, ctx, "volume:multiattach", ctx.project_id)
    volume_id = uuid.uuid4()
    at = await d.volumes.create_volume(
        ctx.caller,
        volume_id,
        meta=ctx.meta("volume:create"),
        encryption=source.encryption if source is not None else vtype.encryption,
        source=source.source if source is not None else None,
        image=image,
        name=req.name,
        description=req.description,
        size_gb=size,
        availability_zone=zone,
        volume_type_id=vtype.tid,
        volume_type_name=vtype.name,
        metadata=dict(req.metadata),
        bootable=source.bootable if source is not None else False,
        multiattach=vtype.multiattach,
    )
    row = await written.created_volume_row(d, at, str(volume_id))
    view = volume_detail(row, ctx.view, extended=False, merge_admin_metadata=False)
    return web.json_response({"volume": view}, status=202)


async def show(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    volume_id = request.match_info["volume_id"]
    row = await get_volume(d.pool, volume_id, project_id=None if ctx.is_admin else ctx.project_id)
    if row is None or not d.policy.allowed(
        "volume:get", ctx.credentials, {"project_id": row["project_id"]}
    ):
        raise volume_not_found(volume_id)
    return web.json_response({"volume": volume_detail(row, ctx.view, extended=True)})


async def _list(request: web.Request, *, detail: bool) -> web.Response:
    d, ctx = deps(request), context(request)
    _authorize(d, ctx, "volume:get_all", ctx.project_id)
    query, with_count = parse_list_query(request.query, ctx)
    try:
        rows = await list_volumes(d.pool, query)
    except LookupError as err:
        raise NotFound(f"Marker {err.args[0]} could not be found.") from err
    views = [
        volume_detail(r, ctx.view, extended=True) if detail else volume_summary(r, ctx.view)
        for r in rows
    ]
    body: dict[str, Any] = {"volumes": views}
    if len(rows) == query.limit and rows:
        url = request.url.update_query({"limit": str(query.limit), "marker": rows[-1]["id"]})
        body["volumes_links"] = [{"href": str(url), "rel": "next"}]
    if with_count and ctx.version.matches(WITH_COUNT):
        body["count"] = await count_volumes(d.pool, query)
    return web.json_response(body)


async def index(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def update(request: web.Request) -> web.Response:
    """PUT /volumes/{id} → 200 with the detail view (admin metadata merged)."""
    d, ctx = deps(request), context(request)
    volume_id = request.match_info["volume_id"]
    req = VolumeUpdateRequest.parse(await json_body(request), ctx.version)
    changes = req.changes()

    def change(volume: Any) -> None:
        _authorize(d, ctx, "volume:update", volume.project_id)
        volume.update(changes)

    at, _ = await d.volumes.act(ctx.caller, volume_id, change, meta=ctx.meta("volume:update"))
    row = await written.volume_row(d, at, volume_id)
    return web.json_response({"volume": volume_detail(row, ctx.view, extended=False)})


def _query_bool(request: web.Request, name: str) -> bool:
    """Cinder's ``get_bool_param``: the last value given; an invalid one is 400."""
    values = request.query.getall(name, [])
    try:
        return parse_query_bool(name, values[-1] if values else None)
    except SchemaError as err:
        raise BadRequest(str(err)) from err


async def delete(request: web.Request) -> web.Response:
    """DELETE /volumes/{id}[?cascade=true][&force=true (3.23+)] → 202. With ``cascade`` the
    volume's snapshots are deleted with it (all ``available``/``error``, or 400)."""
    d, ctx = deps(request), context(request)
    volume_id = request.match_info["volume_id"]
    cascade = _query_bool(request, "cascade")
    force = ctx.version.matches(FORCE_DELETE) and _query_bool(request, "force")

    def authorize(volume: Any) -> None:
        if force:
            _authorize(d, ctx, "volume:force_delete", volume.project_id)
        _authorize(d, ctx, "volume:delete", volume.project_id)

    meta = ctx.meta("volume:delete") | {"cascade": cascade, "force": force}
    command = d.volumes.delete_volume_cascade if cascade else d.volumes.delete_volume
    at = await command(ctx.caller, volume_id, meta=meta, force=force, authorize=authorize)
    await d.read_your_write(at)
    request[RAW_REPLY] = True
    return web.Response(status=202)
