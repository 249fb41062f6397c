"""Reading a JSON request body as Cinder's WSGI layer does (media type, then JSON)."""

from __future__ import annotations

import json

from aiohttp import web

from cinderblock.wire.actions import JSON_MEDIA_TYPES
from cinderblock.wire.faults import BadMediaType, BadRequest


async def json_body(request: web.Request) -> object:
    raw = await request.read()
    content_type = request.headers.get("Content-Type")
    if content_type is not None and content_type.split(";")[0].strip() not in JSON_MEDIA_TYPES:
        raise BadMediaType("Unsupported Content-Type")
    try:
        return json.loads(raw) if raw else None
    except ValueError as err:
        raise BadRequest("Malformed request body") from err
