"""Quota sets (spec §5.4): show (with usage), defaults, update and delete (admin)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cinderblock.api import written
from cinderblock.api.body import json_body
from cinderblock.api.deps import Deps, deps
from cinderblock.api.middleware import context
from cinderblock.readmodels.queries import get_quota, list_types
from cinderblock.wire.faults import BadRequest

PER_TYPE = ("volumes", "gigabytes", "snapshots")
# Keys an update body may carry that are no limits: python-cinderclient (and so ``cinder
# quota-update``) always sends ``tenant_id``; Cinder skips both.
NON_QUOTA_KEYS = frozenset({"tenant_id", "id"})


async def _keys(d: Deps) -> list[str]:
    """The base resources and one trio per live volume type."""
    types = await list_types(d.pool, project_id=None)
    return [*d.settings.quota_limits, *(f"{r}_{t['name']}" for t in types for r in PER_TYPE)]


def limit_of(defaults: dict[str, int], own: dict[str, int], key: str) -> int:
    """A project's limit of one resource: its own, else the default, else unlimited."""
    return int(own.get(key, defaults.get(key, -1)))


async def show(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    target = request.match_info["target"]
    d.policy.authorize("volume_extension:quotas:show", ctx.credentials, {"project_id": target})
    quota = await get_quota(d.pool, target)
    defaults = d.settings.quota_limits
    usage = request.query.get("usage", "").lower() in ("true", "1", "yes")
    body: dict[str, Any] = {"id": target}
    for key in await _keys(d):
        limit = limit_of(defaults, quota["limits"], key)
        if usage:
            body[key] = {
                "limit": limit,
                "in_use": int(quota["in_use"].get(key, 0)),
                "reserved": int(quota["reserved"].get(key, 0)),
            }
        else:
            body[key] = limit
    return web.json_response({"quota_set": body})


async def defaults(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    target = request.match_info["target"]
    d.policy.authorize("volume_extension:quotas:show", ctx.credentials, {"project_id": target})
    body: dict[str, Any] = {"id": target}
    for key in await _keys(d):
        body[key] = limit_of(d.settings.quota_limits, {}, key)
    return web.json_response({"quota_set": body})


async def update(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    target = request.match_info["target"]
    d.policy.authorize("volume_extension:quotas:update", ctx.credentials, {"project_id": target})
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("quota_set"), dict):
        raise BadRequest("Missing required element 'quota_set' in request body.")
    limits: dict[str, int] = {}
    for key, value in body["quota_set"].items():
        if key in NON_QUOTA_KEYS:
            continue
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise BadRequest(f"Quota limit {value!r} for {key} must be an integer.")
        try:
            limits[key] = int(value)
        except ValueError:
            raise BadRequest(f"Quota limit {value!r} for {key} must be an integer.") from None
    keys = await _keys(d)
    at = await d.volumes.set_quota_limits(
        target, limits, frozenset(keys), meta=ctx.meta("quota:update")
    )
    limits = await written.quota_limits(d, at, target)
    return web.json_response(
        {"quota_set": {key: limit_of(d.settings.quota_limits, limits, key) for key in keys}}
    )


async def delete(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    target = request.match_info["target"]
    d.policy.authorize("volume_extension:quotas:delete", ctx.credentials, {"project_id": target})
    at = await d.volumes.clear_quota_limits(target, meta=ctx.meta("quota:delete"))
    await d.read_your_write(at)
    return web.Response(status=200)


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/os-quota-sets/{{target}}/defaults", defaults, allow_head=False)
    router.add_get(f"{prefix}/os-quota-sets/{{target}}", show, allow_head=False)
    router.add_put(f"{prefix}/os-quota-sets/{{target}}", update)
    router.add_delete(f"{prefix}/os-quota-sets/{{target}}", delete)
