"""POST /v3/{project_id}/volumes/{volume_id}/action: one small function per action and an
explicit table. Parsing (wire) → policy → command (store) → read-your-writes → reply."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps, deps
from cinderblock.api.handlers.bookkeeping import BOOKKEEPING_ACTIONS
from cinderblock.api.handlers.migration import MIGRATION_ACTIONS
from cinderblock.api.handlers.reimage import reimage
from cinderblock.api.handlers.retype import retype
from cinderblock.api.handlers.snapshots import revert
from cinderblock.api.handlers.upload import upload_image
from cinderblock.api.middleware import ACTION, RAW_REPLY, context
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.wire.actions import (
    ExtendAction,
    SetBootableAction,
    no_such_action,
    parse_action,
    split_action_body,
)
from cinderblock.wire.microversion import APIVersion

ATTACHED_EXTEND = APIVersion(3, 42)

Action = Callable[[Deps, RequestContext, str, Any], Awaitable[web.Response]]


def _authorizer(
    d: Deps, ctx: RequestContext, rule: Callable[[Volume], str]
) -> Callable[[Volume], None]:
    def authorize(volume: Volume) -> None:
        d.policy.authorize(rule(volume), ctx.credentials, {"project_id": volume.project_id})

    return authorize


async def extend(d: Deps, ctx: RequestContext, volume_id: str, body: ExtendAction) -> web.Response:
    """os-extend → 202; the saga grows the volume (in-use from 3.42)."""
    attached_ok = ctx.version.matches(ATTACHED_EXTEND)

    def rule(volume: Volume) -> str:
        attached = attached_ok and volume.status == Status.IN_USE
        return "volume:extend_attached_volume" if attached else "volume:extend"

    at = await d.volumes.extend_volume(
        ctx.caller,
        volume_id,
        body.new_size,
        in_use_allowed=attached_ok,
        reservation_id=str(uuid.uuid4()),
        meta=ctx.meta("os-extend"),
        authorize=_authorizer(d, ctx, rule),
    )
    await d.read_your_write(at)
    return web.Response(status=202)


async def set_bootable(
    d: Deps, ctx: RequestContext, volume_id: str, body: SetBootableAction
) -> web.Response:
    """os-set_bootable → 200 with an empty body (not 202)."""
    at = await d.volumes.set_bootable(
        ctx.caller,
        volume_id,
        body.bootable,
        meta=ctx.meta("os-set_bootable"),
        authorize=_authorizer(d, ctx, lambda _: "volume:update"),
    )
    await d.read_your_write(at)
    return web.Response(status=200)


# Cinder builds these replies by hand: they carry no x-compute-request-id.
RAW_ACTIONS = frozenset({"os-unmanage", "os-unset_image_metadata"})

ACTIONS: dict[str, Action] = {
    "os-extend": extend,
    "os-set_bootable": set_bootable,
    **BOOKKEEPING_ACTIONS,
    **MIGRATION_ACTIONS,
    "revert": revert,
    "os-retype": retype,
    "os-volume_upload_image": upload_image,
    "os-reimage": reimage,
}


async def volume_action(request: web.Request) -> web.Response:
    ctx = context(request)
    raw = await request.read()
    key, payload = split_action_body(raw, request.headers.get("Content-Type"))
    request[ACTION] = key
    action = ACTIONS.get(key)
    if action is None:
        raise no_such_action(key)
    body = parse_action(key, payload, ctx.version)
    if key in RAW_ACTIONS:
        request[RAW_REPLY] = True
    return await action(deps(request), ctx, request.match_info["volume_id"], body)
