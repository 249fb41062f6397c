"""Volume-type encryption (admin), as Cinder's ``volume_type_encryption`` controller:
``GET/POST /types/{type_id}/encryption``, ``GET /types/{type_id}/encryption/{key}`` (one
item of the record), ``PUT/DELETE /types/{type_id}/encryption/{encryption_id}`` (the id is
not checked, as in Cinder). A type that volumes use cannot get, change or lose its
encryption (400). Changes are events on the VolumeType; reads come from the read model."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from cinderblock.api import written
from cinderblock.api.body import json_body
from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps, deps
from cinderblock.api.middleware import RAW_REPLY, context
from cinderblock.domain.type_encryption import EncryptionNotFoundError
from cinderblock.domain.volume_type import DEFAULT_TYPE_ID, VolumeType
from cinderblock.readmodels.queries import get_type, volumes_of_type
from cinderblock.wire.faults import BadRequest, NotFound
from cinderblock.wire.type_encryption import created_view, encryption_view, parse_encryption

RULE = "volume_extension:volume_type_encryption"


def _allow(d: Deps, ctx: RequestContext, verb: str) -> None:
    d.policy.authorize(f"{RULE}:{verb}", ctx.credentials, {"project_id": ctx.project_id})


async def _type_row(d: Deps, type_id: str) -> dict[str, Any]:
    """Cinder's ``_check_type``: the type by id (admin visibility), else 404."""
    row = await get_type(d.pool, str(DEFAULT_TYPE_ID) if type_id == "default" else type_id)
    if row is None:
        raise NotFound(f"Volume type {type_id} could not be found.")
    return row


async def _refuse_in_use(d: Deps, type_id: str, verb: str) -> None:
    if await volumes_of_type(d.pool, type_id):
        raise BadRequest(f"Cannot {verb} encryption specs. Volume type in use.")


async def index(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _allow(d, ctx, "get")
    row = await _type_row(d, request.match_info["type_id"])
    return web.json_response(encryption_view(row))


async def show(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _allow(d, ctx, "get")
    row = await _type_row(d, request.match_info["type_id"])
    key = request.match_info["key"]
    record = encryption_view(row)
    if key not in record:
        raise NotFound(EncryptionNotFoundError(row["id"]).message)
    return web.json_response({key: record[key]})


async def create(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    specs = parse_encryption(await json_body(request), create=True)
    _allow(d, ctx, "create")
    type_id = request.match_info["type_id"]
    await _refuse_in_use(d, type_id, "create")
    row = await _type_row(d, type_id)
    encryption_id = str(uuid.uuid4())
    at, _ = await d.volumes.change_type(
        row["id"],
        lambda t: t.create_encryption(encryption_id, specs),
        meta=ctx.meta("type:encryption:create"),
    )
    return web.json_response(created_view(await written.type_row(d, at, row["id"])))


async def update(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    specs = parse_encryption(await json_body(request), create=False)
    _allow(d, ctx, "update")
    row = await _type_row(d, request.match_info["type_id"])
    await _refuse_in_use(d, row["id"], "update")
    try:
        at, _ = await d.volumes.change_type(
            row["id"],
            lambda t: t.update_encryption(specs),
            meta=ctx.meta("type:encryption:update"),
        )
    except EncryptionNotFoundError as err:
        raise NotFound(err.message) from None
    await d.read_your_write(at)
    return web.json_response({"encryption": specs})


async def delete(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _allow(d, ctx, "delete")
    type_id = request.match_info["type_id"]
    await _refuse_in_use(d, type_id, "delete")
    row = await get_type(d.pool, type_id)
    if row is None or not row.get("encryption"):
        raise NotFound(EncryptionNotFoundError(type_id).message)
    try:
        at, _ = await d.volumes.change_type(
            row["id"], VolumeType.delete_encryption, meta=ctx.meta("type:encryption:delete")
        )
    except EncryptionNotFoundError as err:
        raise NotFound(err.message) from None
    await d.read_your_write(at)
    request[RAW_REPLY] = True
    return web.Response(status=202)


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    base = f"{prefix}/types/{{type_id}}/encryption"
    router.add_get(base, index, allow_head=False)
    router.add_post(base, create)
    router.add_get(f"{base}/{{key}}", show, allow_head=False)
    router.add_put(f"{base}/{{key}}", update)
    router.add_delete(f"{base}/{{key}}", delete)
