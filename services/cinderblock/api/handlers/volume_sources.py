"""POST /volumes with a source: ``snapshot_id`` (a volume from a snapshot) or
``source_volid`` (a clone). Resolves the source as Cinder's create does: unknown or another
project's → 404; a snapshot must be ``available``, a volume ``available`` or ``in-use``
(400); the size defaults to the source's and may not be smaller (400); the type defaults to
the source volume's, and a requested type must have the source's encryption (400); the new
volume is bootable when its source volume is, takes the source's encryption (with a key of
its own) and goes to the source's pool. An image (``imageRef``, or ``image_id``) is looked up
in the image service as Cinder's ``_image_uuid_from_ref`` does (by id only: 400 when it is not
found); its metadata is checked in the create's append (``domain.volume_image``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps
from cinderblock.domain.errors import InvalidInputError, InvalidVolumeError
from cinderblock.domain.type_encryption import same_encryption
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_image import INVALID_IMAGE, image_uuid_from_ref
from cinderblock.domain.volume_source import (
    check_snapshot_source,
    check_volume_source,
    incompatible_type,
    size_from_source,
)
from cinderblock.domain.volume_type import VolumeType
from cinderblock.images.port import ImageServiceError
from cinderblock.wire.faults import BadRequest, Fault
from cinderblock.wire.volumes import VolumeCreateRequest


@dataclass(frozen=True)
class CreateSource:
    """What a create takes from its source."""

    size_gb: int
    vtype: VolumeType
    bootable: bool
    encryption: dict[str, Any] | None
    source: dict[str, Any]  # the SourceSet fields


async def resolve_source(
    d: Deps, ctx: RequestContext, req: VolumeCreateRequest
) -> CreateSource | None:
    """The source of the create, checked; None when the request names none."""
    given = {
        "snapshot": req.snapshot_id,
        "imageRef": req.image_ref,
        "source volume": req.source_volid,
    }
    named = [name for name, value in given.items() if value is not None]
    if len(named) > 1:  # Cinder's check_exclusive_options
        raise InvalidInputError(f"May specify only one of {', '.join(named)}")
    if req.snapshot_id is not None:
        snapshot = await d.volumes.load_snapshot(ctx.caller, req.snapshot_id)
        check_snapshot_source(snapshot.status)
        origin = await d.volumes.get(None, snapshot.volume_id)
        size = size_from_source(req.size, snapshot.volume_size, snapshot=True)
        source = {"snapshot_id": snapshot.sid, "source_volid": None}
    elif req.source_volid is not None:
        origin = await d.volumes.get(ctx.caller, req.source_volid)
        check_volume_source(origin.status.value)
        size = size_from_source(req.size, origin.size_gb, snapshot=False)
        source = {"snapshot_id": None, "source_volid": origin.vid}
    else:
        return None
    if origin.host is None:  # an available snapshot's or volume's volume always has one
        raise InvalidVolumeError(f"Volume {origin.vid} has no host: it was never created.")
    vtype = await _type(d, ctx, req, origin)
    return CreateSource(
        size_gb=size,
        vtype=vtype,
        bootable=origin.bootable,
        encryption=dict(origin.encryption) if origin.encrypted and origin.encryption else None,
        source={**source, "source_host": origin.host},
    )


async def _type(
    d: Deps, ctx: RequestContext, req: VolumeCreateRequest, origin: Volume
) -> VolumeType:
    """The source volume's type unless another is asked for; that one must keep the
    source's encryption (the data is copied as it is, header included)."""
    if req.volume_type is None:
        return await d.volumes.find_type(origin.volume_type_id)
    vtype = await d.volumes.find_type(
        req.volume_type, project_id=ctx.project_id, is_admin=ctx.is_admin
    )
    theirs = origin.encryption if origin.encrypted else None
    if not same_encryption(theirs, vtype.encryption):
        raise incompatible_type(req.volume_type)
    return vtype


async def resolve_image(d: Deps, image_ref: str) -> dict[str, Any]:
    """The image record ``image_ref`` names (a Nova-made URL is cut to its id). Unknown, not
    an id, or refused by the image service: 400 (Cinder); the service unreachable: 503."""
    image_id = image_uuid_from_ref(image_ref)
    try:
        uuid.UUID(image_id)
        image = await d.images.get(image_id)
    except ValueError as err:
        raise InvalidInputError(INVALID_IMAGE) from err
    except ImageServiceError as err:
        if err.retryable:
            raise Fault(503, f"The image service is unavailable: {err.message}") from err
        raise InvalidInputError(INVALID_IMAGE) from err
    if image is None or "id" not in image:
        raise InvalidInputError(INVALID_IMAGE)
    if image.get("block_device_mapping"):
        # Nova's snapshot of a volume-backed server: Cinder creates from the volume
        # snapshot it names; not served here (no image refers to a snapshot of this service).
        raise BadRequest(f"Image {image_id} is a snapshot of a volume-backed server.")
    return image
