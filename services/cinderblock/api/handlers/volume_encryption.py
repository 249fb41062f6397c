"""A volume's encryption metadata (Cinder's ``os-volume-encryption-metadata`` extension):
``GET /volumes/{volume_id}/encryption`` and ``.../encryption/{key}``. Nova reads it when it
attaches an encrypted volume, to open it with the right provider and key."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cinderblock.api.deps import deps
from cinderblock.api.middleware import context
from cinderblock.readmodels.queries import get_type, get_volume
from cinderblock.wire.faults import NotFound, volume_not_found
from cinderblock.wire.type_encryption import volume_encryption_view

RULE = "volume_extension:volume_encryption_metadata"


async def _metadata(request: web.Request) -> dict[str, Any]:
    """Cinder's ``index``: the volume as the caller may see it (else 404), then the rule
    against the volume's project (403)."""
    d, ctx = deps(request), context(request)
    volume_id = request.match_info["volume_id"]
    row = await get_volume(d.pool, volume_id, project_id=None if ctx.is_admin else ctx.project_id)
    if row is None:
        raise volume_not_found(volume_id)
    d.policy.authorize(RULE, ctx.credentials, {"project_id": row["project_id"]})
    vtype = await get_type(d.pool, row["volume_type_id"])
    return volume_encryption_view(row["encryption_key_id"], vtype)


async def index(request: web.Request) -> web.Response:
    return web.json_response(await _metadata(request))


async def show(request: web.Request) -> web.Response:
    """One item, its value alone (Cinder returns ``encryption_item[key]``), as JSON."""
    metadata = await _metadata(request)
    key = request.match_info["key"]
    if key not in metadata:
        volume_id = request.match_info["volume_id"]
        raise NotFound(f"Volume {volume_id} has no encryption metadata item {key}.")
    return web.json_response(metadata[key])


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/volumes/{{volume_id}}/encryption", index, allow_head=False)
    router.add_get(f"{prefix}/volumes/{{volume_id}}/encryption/{{key}}", show, allow_head=False)
