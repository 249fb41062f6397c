"""Version discovery and health: unauthenticated."""

from __future__ import annotations

from aiohttp import web

from cinderblock.api.deps import deps
from cinderblock.readmodels.quarantine import summary
from cinderblock.wire.views import versions_document


async def root(request: web.Request) -> web.Response:
    return web.json_response(versions_document(str(request.url.origin())), status=300)


async def v3(request: web.Request) -> web.Response:
    return web.json_response(versions_document(str(request.url.origin())))


async def healthcheck(request: web.Request) -> web.Response:
    """oslo.middleware style: ``OK`` with 200 (HEAD 204) while the database answers, 503
    when it does not.

    Degraded: some consumer quarantined an aggregate (an event it cannot apply; see
    ``cinderblock.readmodels.quarantine``). Everything else is served, so this is still a
    200 (oslo's healthcheck knows only available or not, and a 503 would make a load
    balancer drop an API that serves all other volumes); the body says ``DEGRADED`` and
    which consumers hold how many aggregates.
    """
    try:
        held = await summary(deps(request).pool)
        ok = True
    except Exception:
        held, ok = {}, False
    if request.method == "HEAD":
        return web.Response(status=204 if ok else 503)
    if not ok:
        reason = "database unavailable"
    elif held:
        counts = ", ".join(f"{consumer} {n}" for consumer, n in held.items())
        reason = f"DEGRADED: quarantined aggregates ({counts}); see cinderblock verify"
    else:
        reason = "OK"
    status = 200 if ok else 503
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"detailed": False, "reasons": [reason]}, status=status)
    return web.Response(text=reason, status=status)
