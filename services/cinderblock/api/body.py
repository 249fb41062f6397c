"""Reading a JSON request body as Cinder's WSGI layer does (media type, then JSON), refusing
strings the stores cannot hold (``cinderblock.wire.storable``)."""

from __future__ import annotations

from aiohttp import web

from cinderblock.wire.actions import JSON_MEDIA_TYPES
from cinderblock.wire.faults import BadMediaType
from cinderblock.wire.storable import loads


async def json_body(request: web.Request) -> object:
    raw = await request.read()
    content_type = request.headers.get("Content-Type")
    if content_type is not None and content_type.split(";")[0].strip() not in JSON_MEDIA_TYPES:
        raise BadMediaType("Unsupported Content-Type")
    return loads(raw) if raw else None
