"""os-reimage (3.68) → 202; the reimage saga writes the image onto the volume. Cinder's
order: the volume (404), the image (404), the policy by the volume's status
(``volume:reimage_reserved`` for a reserved volume, else ``volume:reimage``: 403), then the
volume's rules (409 for two attachments, 400 for the status and the image)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps
from cinderblock.domain import commands
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.images.port import ImageServiceError
from cinderblock.wire.faults import BadRequest, Fault, NotFound
from cinderblock.wire.reimage import Reimage

RULE = "volume:reimage"
RESERVED_RULE = "volume:reimage_reserved"


async def _image(d: Deps, image_id: str) -> dict[str, Any]:
    try:
        image = await d.images.get(image_id)
    except ImageServiceError as err:
        if err.retryable:
            raise Fault(503, f"The image service is unavailable: {err.message}") from err
        raise BadRequest(f"Failed to get image {image_id}: {err.message}") from err
    if image is None:
        raise NotFound(f"Image {image_id} could not be found.")
    if image.get("block_device_mapping"):
        # Nova's snapshot of a volume-backed server: Cinder reverts to the volume snapshot
        # it names; not served here (no image refers to a snapshot of this service).
        raise BadRequest(f"Image {image_id} is a snapshot of a volume-backed server.")
    return image


async def reimage(d: Deps, ctx: RequestContext, vid: str, req: Reimage) -> web.Response:
    await d.volumes.get(ctx.caller, vid)  # 404 before the image is looked up
    image = await _image(d, req.image_id)

    def authorize(volume: Volume) -> None:
        rule = RESERVED_RULE if volume.status == Status.RESERVED else RULE
        d.policy.authorize(rule, ctx.credentials, {"project_id": volume.project_id})

    at, _ = await d.volumes.handle(
        ctx.caller,
        vid,
        commands.Reimage(image, reimage_reserved=req.reimage_reserved),
        meta=ctx.meta("os-reimage"),
        authorize=authorize,
    )
    await d.read_your_write(at)
    return web.Response(status=202)
