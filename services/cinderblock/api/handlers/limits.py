"""``GET /limits`` (Cinder's limits API with the used-limits extension): the project's
absolute limits from its quota limits, its usage when ``limits_extension:used_limits``
allows, no rate limits. Nova reads it (``get_absolute_limits``) before it snapshots the
volumes of a volume-backed server."""

from __future__ import annotations

from aiohttp import web

from cinderblock.api.deps import deps
from cinderblock.api.handlers.quotas import limit_of
from cinderblock.api.middleware import context
from cinderblock.readmodels.queries import get_quota
from cinderblock.wire.limits import LIMIT_NAMES, USED_NAMES, limits_view, target_project

USED_LIMITS = "limits_extension:used_limits"


async def index(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    project = target_project(
        request.query, ctx.project_id, is_admin=ctx.is_admin, version=ctx.version
    )
    quota = await get_quota(d.pool, project)
    defaults = d.settings.quota_limits
    limits = {key: limit_of(defaults, quota["limits"], key) for key in LIMIT_NAMES}
    # Cinder asks with its default target, the caller's own project.
    used = d.policy.allowed(USED_LIMITS, ctx.credentials, {"project_id": ctx.project_id})
    in_use = {key: int(quota["in_use"].get(key, 0)) for key in USED_NAMES} if used else None
    return web.json_response(limits_view(limits, in_use))


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/limits", index, allow_head=False)
