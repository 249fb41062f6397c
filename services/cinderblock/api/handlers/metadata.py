"""Volume metadata endpoints: `/volumes/{id}/metadata[/{key}]`. Every change is the volume's
``Updated`` event with the whole resulting metadata."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cinderblock.api.body import json_body
from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps, deps
from cinderblock.api.middleware import RAW_REPLY, context
from cinderblock.domain.volume import Volume
from cinderblock.readmodels.queries import get_volume
from cinderblock.wire.faults import BadRequest, NotFound, volume_not_found
from cinderblock.wire.schema import SchemaError, parse_metadata


def _parse(body: object, key: str) -> dict[str, str]:
    if not isinstance(body, dict) or set(body) != {key}:
        raise BadRequest(f'Malformed request body: expected {{"{key}": {{...}}}}.')
    try:
        return parse_metadata(body[key])
    except (SchemaError, ValueError) as err:
        raise BadRequest(f"Invalid input for field/attribute {key}. {err}") from err


async def _change(d: Deps, ctx: RequestContext, vid: str, rule: str, new: Any) -> dict[str, str]:
    """Apply ``new(current_metadata) -> metadata`` as an update; returns the result."""

    def change(volume: Volume) -> dict[str, str]:
        d.policy.authorize(rule, ctx.credentials, {"project_id": volume.project_id})
        result: dict[str, str] = new(dict(volume.metadata))
        if result != volume.metadata:
            volume.update({"metadata": result})
        return result

    at, result = await d.volumes.act(ctx.caller, vid, change, meta=ctx.meta(rule))
    await d.read_your_write(at)
    return result


async def index(request: web.Request) -> web.Response:
    return web.json_response({"metadata": await _current(request)})


async def _current(request: web.Request) -> dict[str, str]:
    d, ctx = deps(request), context(request)
    vid = request.match_info["volume_id"]
    row = await get_volume(d.pool, vid, project_id=None if ctx.is_admin else ctx.project_id)
    if row is None:
        raise volume_not_found(vid)
    d.policy.authorize(
        "volume:get_volume_metadata", ctx.credentials, {"project_id": row["project_id"]}
    )
    metadata: dict[str, str] = row["metadata"]
    return metadata


async def show(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    metadata = await _current(request)
    if key not in metadata:
        raise NotFound("Metadata item was not found")
    return web.json_response({"meta": {key: metadata[key]}})


async def create(request: web.Request) -> web.Response:
    """POST: add or overwrite the given keys; the answer is the whole metadata."""
    d, ctx = deps(request), context(request)
    given = _parse(await json_body(request), "metadata")
    result = await _change(
        d,
        ctx,
        request.match_info["volume_id"],
        "volume:create_volume_metadata",
        lambda m: {**m, **given},
    )
    return web.json_response({"metadata": result})


async def replace(request: web.Request) -> web.Response:
    """PUT: the given metadata replaces all of it."""
    d, ctx = deps(request), context(request)
    given = _parse(await json_body(request), "metadata")
    result = await _change(
        d,
        ctx,
        request.match_info["volume_id"],
        "volume:update_volume_metadata",
        lambda m: dict(given),
    )
    return web.json_response({"metadata": result})


async def update_key(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    key = request.match_info["key"]
    given = _parse(await json_body(request), "meta")
    if list(given) != [key]:
        raise BadRequest(
            "Request body and URI mismatch"
            if len(given) == 1
            else "Request body contains too many items"
        )
    await _change(
        d,
        ctx,
        request.match_info["volume_id"],
        "volume:update_volume_metadata",
        lambda m: {**m, **given},
    )
    return web.json_response({"meta": given})


async def delete_key(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    key = request.match_info["key"]

    def without(metadata: dict[str, str]) -> dict[str, str]:
        if key not in metadata:
            raise NotFound("Metadata item was not found")
        return {k: v for k, v in metadata.items() if k != key}

    await _change(d, ctx, request.match_info["volume_id"], "volume:delete_volume_metadata", without)
    request[RAW_REPLY] = True
    return web.Response(status=200)


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    base = f"{prefix}/volumes/{{volume_id}}/metadata"
    router.add_get(base, index, allow_head=False)
    router.add_post(base, create)
    router.add_put(base, replace)
    router.add_get(f"{base}/{{key}}", show, allow_head=False)
    router.add_put(f"{base}/{{key}}", update_key)
    router.add_delete(f"{base}/{{key}}", delete_key)
