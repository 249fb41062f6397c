"""POST /v3/{project_id}/volumes/{volume_id}/action: split the body (spec §1.4), find the
action's row in ``cinderblock.api.action_table``, parse with its model, hand over to its
handler. Policy, command, read-your-writes and the reply are the handler's."""

from __future__ import annotations

from aiohttp import web

from cinderblock.api.action_table import ACTION_TABLE
from cinderblock.api.deps import deps
from cinderblock.api.middleware import ACTION, RAW_REPLY, context
from cinderblock.wire.actions import no_such_action, split_action_body


async def volume_action(request: web.Request) -> web.Response:
    ctx = context(request)
    raw = await request.read()
    key, payload = split_action_body(raw, request.headers.get("Content-Type"))
    request[ACTION] = key
    spec = ACTION_TABLE.get(key)
    if spec is None:
        raise no_such_action(key)
    body = spec.model.parse(payload, ctx.version)
    if spec.raw_reply:
        request[RAW_REPLY] = True
    return await spec.handler(deps(request), ctx, request.match_info["volume_id"], body)
