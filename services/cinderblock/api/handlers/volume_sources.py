"""POST /volumes with a source: ``snapshot_id`` (a volume from a snapshot) or
``source_volid`` (a clone). Resolves the source as Cinder's create does: unknown or another
project's → 404; a snapshot must be ``available``, a volume ``available`` or ``in-use``
(400); the size defaults to the source's and may not be smaller (400); the type defaults to
the one the snapshot was taken with (a later retype of its volume does not change it), or
to the source volume's; another requested type must be one the source volume's type could
be retyped to (Cinder's ``_retype_is_possible``: the same encryption, and one volume
service or the same ``volume_backend_name``), else 400; the new volume is bootable when its
source volume is, takes the source's encryption (with a key of its own) and goes to the
source's pool. An image (``imageRef``, or ``image_id``) is looked up
in the image service as Cinder's ``_image_uuid_from_ref`` does (by id only: 400 when it is not
found); its metadata is checked in the create's append (``domain.volume_image``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps
from cinderblock.domain.errors import InvalidInputError, InvalidVolumeError
from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_image import INVALID_IMAGE, image_uuid_from_ref
from cinderblock.domain.volume_source import (
    check_snapshot_source,
    check_volume_source,
    incompatible_type,
    size_from_source,
    type_is_compatible,
)
from cinderblock.domain.volume_type import VolumeType, VolumeTypeNotFoundError
from cinderblock.images.port import ImageServiceError
from cinderblock.readmodels.backends import services
from cinderblock.wire.faults import BadRequest, Fault
from cinderblock.wire.volumes import VolumeCreateRequest

VOLUME_BINARY = "cinder-volume"


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
    # Cinder checks the requested type (volume/api.py ``create``) before the flow checks
    # the source's status and size (``ExtractVolumeRequestTask``).
    if req.snapshot_id is not None:
        snapshot = await d.volumes.load_snapshot(ctx.caller, req.snapshot_id)
        origin = await d.volumes.get(None, snapshot.volume_id)
        vtype = await _type(d, ctx, req, origin, await _taken_with(d, snapshot, origin))
        check_snapshot_source(snapshot.status)
        size = size_from_source(req.size, snapshot.volume_size, snapshot=True)
        source = {"snapshot_id": snapshot.sid, "source_volid": None}
    elif req.source_volid is not None:
        origin = await d.volumes.get(ctx.caller, req.source_volid)
        vtype = await _type(d, ctx, req, origin, origin.volume_type_id)
        check_volume_source(origin.status.value)
        size = size_from_source(req.size, origin.size_gb, snapshot=False)
        source = {"snapshot_id": None, "source_volid": origin.vid}
    else:
        return None
    if origin.host is None:  # an available snapshot's or volume's volume always has one
        raise InvalidVolumeError(f"Volume {origin.vid} has no host: it was never created.")
    return CreateSource(
        size_gb=size,
        vtype=vtype,
        bootable=origin.bootable,
        encryption=dict(origin.encryption) if origin.encrypted and origin.encryption else None,
        source={**source, "source_host": origin.host},
    )


async def _taken_with(d: Deps, snapshot: Snapshot, origin: Volume) -> str:
    """The id of the type the snapshot was taken with: recorded on it; for a snapshot
    stored before it was, the type of the name it recorded (its volume's current type when
    that name is gone)."""
    if snapshot.volume_type_id is not None:
        return str(snapshot.volume_type_id)
    try:
        return (await d.volumes.find_type(snapshot.volume_type_name)).tid
    except VolumeTypeNotFoundError:
        return origin.volume_type_id


async def _type(
    d: Deps, ctx: RequestContext, req: VolumeCreateRequest, origin: Volume, source_type_id: str
) -> VolumeType:
    """The source's type (``source_type_id``) unless another is asked for; that one must be
    one the source volume's type could be retyped to (Cinder compares with the source
    volume's type, also for a snapshot)."""
    if req.volume_type is None:
        return await d.volumes.find_type(source_type_id)
    vtype = await d.volumes.find_type(
        req.volume_type, project_id=ctx.project_id, is_admin=ctx.is_admin
    )
    if vtype.tid == source_type_id:
        return vtype
    try:
        backend = (await d.volumes.find_type(origin.volume_type_id)).backend_name
    except VolumeTypeNotFoundError:
        backend = None
    volume_services = sum(1 for s in await services(d.pool) if s["binary_name"] == VOLUME_BINARY)
    if not type_is_compatible(
        origin.encryption if origin.encrypted else None,
        backend,
        vtype.encryption,
        vtype.backend_name,
        volume_services=volume_services,
    ):
        raise incompatible_type(vtype.tid, snapshot=req.snapshot_id is not None)
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
