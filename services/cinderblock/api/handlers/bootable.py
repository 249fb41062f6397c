"""os-set_bootable (spec §3.15) → 200 with an empty body (not 202)."""

from __future__ import annotations

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps
from cinderblock.domain.volume import Volume
from cinderblock.wire.actions import SetBootableAction

RULE = "volume:update"


async def set_bootable(
    d: Deps, ctx: RequestContext, volume_id: str, body: SetBootableAction
) -> web.Response:
    def authorize(volume: Volume) -> None:
        d.policy.authorize(RULE, ctx.credentials, {"project_id": volume.project_id})

    at = await d.volumes.set_bootable(
        ctx.caller, volume_id, body.bootable, meta=ctx.meta("os-set_bootable"), authorize=authorize
    )
    await d.read_your_write(at)
    return web.Response(status=200)
