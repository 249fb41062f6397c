"""os-retype → 202; the retype saga switches the type in place or moves the data."""

from __future__ import annotations

import uuid

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps
from cinderblock.domain.volume import Volume
from cinderblock.wire.bookkeeping import RetypeAction

RULE = "volume:retype"
MULTIATTACH_RULE = "volume:multiattach"  # also when the new type is multiattach


async def retype(d: Deps, ctx: RequestContext, vid: str, req: RetypeAction) -> web.Response:
    # Cinder's order (spec 3.11): the volume (404), its policy (403), then the new type: a
    # caller refused the retype learns nothing of which types exist.
    volume = await d.volumes.get(ctx.caller, vid)
    d.policy.authorize(RULE, ctx.credentials, {"project_id": volume.project_id})
    # Cinder looks the type up with an elevated context: a private type is found too.
    new_type = await d.volumes.find_type(req.new_type)

    def authorize(volume: Volume) -> None:
        target = {"project_id": volume.project_id}
        d.policy.authorize(RULE, ctx.credentials, target)
        if new_type.multiattach:
            d.policy.authorize(MULTIATTACH_RULE, ctx.credentials, target)

    at = await d.volumes.retype_volume(
        ctx.caller,
        vid,
        new_type,
        migration_policy=req.migration_policy,
        reservation_id=str(uuid.uuid4()),
        meta=ctx.meta("os-retype"),
        authorize=authorize,
    )
    await d.read_your_write(at)
    return web.Response(status=202)
