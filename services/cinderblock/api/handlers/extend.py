"""os-extend (spec §3.1) → 202; the extend saga grows the volume (in-use from 3.42)."""

from __future__ import annotations

import uuid

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.wire.actions import ExtendAction
from cinderblock.wire.microversion import APIVersion

ATTACHED_EXTEND = APIVersion(3, 42)
RULE = "volume:extend"
ATTACHED_RULE = "volume:extend_attached_volume"


async def extend(d: Deps, ctx: RequestContext, volume_id: str, body: ExtendAction) -> web.Response:
    attached_ok = ctx.version.matches(ATTACHED_EXTEND)

    def authorize(volume: Volume) -> None:
        attached = attached_ok and volume.status == Status.IN_USE
        rule = ATTACHED_RULE if attached else RULE
        d.policy.authorize(rule, ctx.credentials, {"project_id": volume.project_id})

    at = await d.volumes.extend_volume(
        ctx.caller,
        volume_id,
        body.new_size,
        in_use_allowed=attached_ok,
        reservation_id=str(uuid.uuid4()),
        meta=ctx.meta("os-extend"),
        authorize=authorize,
    )
    await d.read_your_write(at)
    return web.Response(status=202)
