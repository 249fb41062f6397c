"""os-volume_upload_image → 202 with the image it is becoming; the upload saga copies the
data. The image record is made now, as Cinder does, so its id can be returned."""

from __future__ import annotations

import contextlib
import uuid

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps
from cinderblock.domain import commands
from cinderblock.domain.volume import Volume
from cinderblock.images.port import ImageServiceError, ImageSpec
from cinderblock.wire.bookkeeping import UploadImage
from cinderblock.wire.faults import BadRequest
from cinderblock.wire.views import format_time

RULE = "volume_extension:volume_actions:upload_image"
PUBLIC_RULE = "volume_extension:volume_actions:upload_public"


async def upload_image(d: Deps, ctx: RequestContext, vid: str, req: UploadImage) -> web.Response:
    image_id = str(uuid.uuid4())
    public = ctx.version.matches("3.1") and req.visibility == "public"
    force = req.force and d.settings.enable_force_upload  # ignored unless enabled (Cinder)
    container_format = req.container_format or "bare"

    def authorize(volume: Volume) -> None:
        target = {"project_id": volume.project_id}
        d.policy.authorize(RULE, ctx.credentials, target)
        if public:
            d.policy.authorize(PUBLIC_RULE, ctx.credentials, target)

    start = commands.UploadToImage(
        image_id,
        image_name=req.image_name,
        disk_format=req.disk_format,
        container_format=container_format,
        visibility=req.visibility,
        protected=req.protected,
        force=force,
    )

    # The image record exists before the event that starts the upload saga, so the saga
    # never looks for an image that is not there yet.
    current = await d.volumes.get(ctx.caller, vid)
    d.policy.authorize(RULE, ctx.credentials, {"project_id": current.project_id})
    properties = {"volume_id": vid}
    if current.encrypted:  # encrypted volumes cannot be converted on upload
        if req.disk_format != "raw" or container_format != "bare":
            raise BadRequest(
                "An encrypted volume uploaded as an image must use 'raw' disk_format and "
                "'bare' container_format, which are the defaults for these options."
            )
        properties["cinder_encryption_key_id"] = str(uuid.uuid4())  # a clone of its key
        properties["cinder_encryption_key_deletion_policy"] = "on_image_deletion"
    spec = ImageSpec(
        image_id=image_id,
        name=req.image_name,
        disk_format=req.disk_format,
        container_format=container_format,
        visibility=req.visibility,
        protected=req.protected,
        min_disk=current.size_gb,
        properties=properties,
    )
    try:
        await d.images.create(spec, request_id=ctx.request_id)
    except ImageServiceError as err:
        raise BadRequest(f"Failed to create image {image_id}: {err.message}") from err
    try:
        at, volume = await d.volumes.handle(
            ctx.caller, vid, start, meta=ctx.meta("os-volume_upload_image"), authorize=authorize
        )
    except Exception:
        with contextlib.suppress(ImageServiceError):
            await d.images.delete(image_id)  # nothing will upload into it
        raise
    await d.read_your_write(at)
    body = {
        "id": vid,
        "updated_at": format_time(volume.modified_on.replace(tzinfo=None)),
        "status": "uploading",
        "display_description": volume.description,
        "size": volume.size_gb,
        "volume_type": None,
        "image_id": image_id,
        "container_format": container_format,
        "disk_format": req.disk_format,
        "image_name": req.image_name,
        "protected": req.protected,
        "visibility": req.visibility,
    }
    return web.json_response({"os-volume_upload_image": body}, status=202)
