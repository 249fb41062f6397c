"""Volume types (spec §5.2): list/show for readers; create, update, delete, extra specs and
project access for admins. Commands go through the event store; reads through read models."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cinderblock.api import written
from cinderblock.api.body import json_body
from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps, deps
from cinderblock.api.handlers import type_encryption
from cinderblock.api.middleware import RAW_REPLY, context
from cinderblock.domain.volume_type import DEFAULT_TYPE_ID, VolumeType
from cinderblock.readmodels.queries import get_type, list_types, volumes_of_type
from cinderblock.store.eventstore import Position
from cinderblock.wire.faults import BadRequest, NotFound
from cinderblock.wire.volume_types import (
    TypeCreateRequest,
    TypeUpdateRequest,
    parse_specs,
    type_view,
)


def _allow(d: Deps, ctx: RequestContext, rule: str) -> None:
    d.policy.authorize(rule, ctx.credentials, {"project_id": ctx.project_id})


def _visible(ctx: RequestContext, type_id: str, row: dict[str, Any] | None) -> dict[str, Any]:
    visible = row is not None and (
        ctx.is_admin or row["is_public"] or ctx.project_id in row["projects"]
    )
    if row is None or not visible:
        raise NotFound(f"Volume type {type_id} could not be found.")
    return row


async def _row(d: Deps, ctx: RequestContext, type_id: str) -> dict[str, Any]:
    if type_id == "default":
        type_id = str(DEFAULT_TYPE_ID)
    return _visible(ctx, type_id, await get_type(d.pool, type_id))


async def _reply(d: Deps, ctx: RequestContext, at: Position, type_id: str) -> web.Response:
    row = _visible(ctx, type_id, await written.type_row(d, at, type_id))
    return web.json_response({"volume_type": type_view(row, is_admin=ctx.is_admin)})


def _parse_is_public(value: str | None) -> bool | None:
    """Cinder's ``_parse_is_public`` (admins only): absent → public types only, ``None``
    (any case, as python-cinderclient sends by default) → all, else a strict boolean."""
    if value is None:
        return True
    lowered = value.strip().lower()
    if lowered == "none":
        return None
    if lowered in ("1", "t", "true", "on", "y", "yes"):
        return True
    if lowered in ("0", "f", "false", "off", "n", "no"):
        return False
    raise BadRequest(f"Invalid is_public filter [{value}]")


async def index(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _allow(d, ctx, "volume_extension:type_get_all")
    public = _parse_is_public(request.query.get("is_public")) if ctx.is_admin else None
    rows = await list_types(
        d.pool, project_id=None if ctx.is_admin else ctx.project_id, is_public=public
    )
    return web.json_response({"volume_types": [type_view(r, is_admin=ctx.is_admin) for r in rows]})


async def show(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _allow(d, ctx, "volume_extension:type_get")
    row = await _row(d, ctx, request.match_info["type_id"])
    return web.json_response({"volume_type": type_view(row, is_admin=ctx.is_admin)})


async def create(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _allow(d, ctx, "volume_extension:type_create")
    req = TypeCreateRequest.parse(await json_body(request))
    at, type_id = await d.volumes.create_type(
        name=req.name,
        description=req.description,
        is_public=req.is_public,
        extra_specs=req.extra_specs,
        meta=ctx.meta("type:create"),
    )
    return await _reply(d, ctx, at, type_id)


async def update(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _allow(d, ctx, "volume_extension:type_update")
    req = TypeUpdateRequest.parse(await json_body(request))
    type_id = request.match_info["type_id"]
    at, vtype = await d.volumes.change_type(
        type_id, lambda t: (t.update(req.changes), t)[1], meta=ctx.meta("type:update")
    )
    return await _reply(d, ctx, at, vtype.tid)


async def delete(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _allow(d, ctx, "volume_extension:type_delete")
    type_id = request.match_info["type_id"]
    vtype = await d.volumes.find_type(type_id)
    if await volumes_of_type(d.pool, vtype.tid):
        raise BadRequest(
            f"Target volume type is still in use. Volume Type {vtype.tid} deletion "
            "is not allowed with volumes present with the type."
        )
    at, _ = await d.volumes.change_type(vtype.tid, VolumeType.delete, meta=ctx.meta("type:delete"))
    await d.read_your_write(at)
    request[RAW_REPLY] = True
    return web.Response(status=202)


async def specs_index(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _allow(d, ctx, "volume_extension:types_extra_specs:index")
    row = await _row(d, ctx, request.match_info["type_id"])
    return web.json_response({"extra_specs": type_view(row, is_admin=ctx.is_admin)["extra_specs"]})


async def specs_create(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _allow(d, ctx, "volume_extension:types_extra_specs:create")
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) != {"extra_specs"}:
        raise BadRequest('The body must be {"extra_specs": {...}}.')
    specs = parse_specs(body["extra_specs"])
    vtype = await d.volumes.find_type(request.match_info["type_id"])
    if await volumes_of_type(d.pool, vtype.tid):
        raise BadRequest(f"Volume Type {vtype.tid} is in use: its extra specs cannot change.")
    at, _ = await d.volumes.change_type(
        vtype.tid, lambda t: t.set_extra_specs(specs), meta=ctx.meta("type:extra_specs")
    )
    await d.read_your_write(at)
    return web.json_response({"extra_specs": specs})


async def specs_show(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _allow(d, ctx, "volume_extension:types_extra_specs:show")
    row = await _row(d, ctx, request.match_info["type_id"])
    key = request.match_info["key"]
    specs = type_view(row, is_admin=ctx.is_admin)["extra_specs"]
    if key not in specs:
        raise NotFound(f"Volume Type {row['id']} has no extra specs with key {key}.")
    return web.json_response({key: specs[key]})


async def specs_delete(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _allow(d, ctx, "volume_extension:types_extra_specs:delete")
    key = request.match_info["key"]
    vtype = await d.volumes.find_type(request.match_info["type_id"])
    if await volumes_of_type(d.pool, vtype.tid):
        raise BadRequest(f"Volume Type {vtype.tid} is in use: its extra specs cannot change.")
    at, _ = await d.volumes.change_type(
        vtype.tid, lambda t: t.unset_extra_spec(key), meta=ctx.meta("type:extra_specs")
    )
    await d.read_your_write(at)
    request[RAW_REPLY] = True
    return web.Response(status=202)


async def action(request: web.Request) -> web.Response:
    """addProjectAccess / removeProjectAccess (admin) → 202."""
    d, ctx = deps(request), context(request)
    body = await json_body(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest("Malformed request body")
    ((key, value),) = body.items()
    if key not in ("addProjectAccess", "removeProjectAccess") or not isinstance(value, dict):
        raise BadRequest(f"There is no such action: {key}")
    project = value.get("project")
    if not isinstance(project, str) or not project:
        raise BadRequest("Access list not available for public volume types.")
    _allow(d, ctx, f"volume_extension:volume_type_access:{key}")
    type_id = request.match_info["type_id"]
    verb = VolumeType.add_access if key == "addProjectAccess" else VolumeType.remove_access
    at, _ = await d.volumes.change_type(
        type_id, lambda t: verb(t, project), meta=ctx.meta(f"type:{key}")
    )
    await d.read_your_write(at)
    return web.Response(status=202)


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/types", index, allow_head=False)
    router.add_post(f"{prefix}/types", create)
    router.add_get(f"{prefix}/types/{{type_id}}", show, allow_head=False)
    router.add_put(f"{prefix}/types/{{type_id}}", update)
    router.add_delete(f"{prefix}/types/{{type_id}}", delete)
    router.add_post(f"{prefix}/types/{{type_id}}/action", action)
    router.add_get(f"{prefix}/types/{{type_id}}/extra_specs", specs_index, allow_head=False)
    router.add_post(f"{prefix}/types/{{type_id}}/extra_specs", specs_create)
    router.add_get(f"{prefix}/types/{{type_id}}/extra_specs/{{key}}", specs_show, allow_head=False)
    router.add_delete(f"{prefix}/types/{{type_id}}/extra_specs/{{key}}", specs_delete)
    type_encryption.setup(router, prefix)
