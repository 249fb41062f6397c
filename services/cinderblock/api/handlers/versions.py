"""Version discovery and health: unauthenticated."""

from __future__ import annotations

from aiohttp import web

from cinderblock.api.deps import deps
from cinderblock.wire.views import versions_document


async def root(request: web.Request) -> web.Response:
    return web.json_response(versions_document(str(request.url.origin())), status=300)


async def v3(request: web.Request) -> web.Response:
    return web.json_response(versions_document(str(request.url.origin())))


async def healthcheck(request: web.Request) -> web.Response:
    """oslo.middleware style: 200 ``OK`` / 503; HEAD 204. The database must answer."""
    try:
        await deps(request).pool.fetchval("SELECT 1")
        ok = True
    except Exception:
        ok = False
    if request.method == "HEAD":
        return web.Response(status=204 if ok else 503)
    if "application/json" in request.headers.get("Accept", ""):
        reasons = ["OK"] if ok else ["database unavailable"]
        return web.json_response({"detailed": False, "reasons": reasons}, status=200 if ok else 503)
    return web.Response(text="OK" if ok else "database unavailable", status=200 if ok else 503)
