"""The attachments API on the wire (3.27+; os-complete 3.44+; mode 3.54+): request models
and views (spec §5.3)."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict

from cinderblock.wire.faults import BadRequest
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.schema import is_uuid_like
from cinderblock.wire.views import format_time

ATTACHMENTS_VERSION = APIVersion(3, 27)
COMPLETE_VERSION = APIVersion(3, 44)
MODE_VERSION = APIVersion(3, 54)


def _attachment_object(body: object) -> dict[str, Any]:
    if (
        not isinstance(body, dict)
        or set(body) != {"attachment"}
        or not isinstance(body["attachment"], dict)
    ):
        raise BadRequest('The body must be {"attachment": {...}}.')
    value: dict[str, Any] = body["attachment"]
    return value


class AttachmentCreateRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    volume_uuid: str
    instance_uuid: str | None
    connector: dict[str, Any] | None
    mode: str | None

    @classmethod
    def parse(cls, body: object, version: APIVersion) -> Self:
        fields = _attachment_object(body)
        allowed = {"volume_uuid", "instance_uuid", "connector"}
        if version.matches(MODE_VERSION):
            allowed.add("mode")
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise BadRequest(f"Additional properties are not allowed ({unknown} were unexpected)")
        volume = fields.get("volume_uuid")
        if not is_uuid_like(volume):
            raise BadRequest("Invalid input for field/attribute volume_uuid: a uuid is required.")
        instance = fields.get("instance_uuid")
        if instance is not None and not is_uuid_like(instance):
            raise BadRequest("Invalid input for field/attribute instance_uuid: a uuid is required.")
        connector = fields.get("connector")
        if connector is not None and not isinstance(connector, dict):
            raise BadRequest(
                "Invalid input for field/attribute connector: an object or null is required."
            )
        mode = fields.get("mode")
        if mode is not None and mode not in ("rw", "ro"):
            raise BadRequest("Invalid input for field/attribute mode: 'rw' or 'ro'.")
        return cls(volume_uuid=str(volume), instance_uuid=instance, connector=connector, mode=mode)


def parse_update(body: object) -> dict[str, Any]:
    fields = _attachment_object(body)
    connector = fields.get("connector")
    if set(fields) != {"connector"} or not isinstance(connector, dict) or not connector:
        raise BadRequest(
            "Invalid input for field/attribute connector: a non-empty object is required."
        )
    return connector


def attachment_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": row["attach_status"],
        "instance": row["instance_uuid"],
        "volume_id": row["volume_id"],
    }


def flat_connection_info(info: dict[str, Any] | None, attachment_id: str) -> dict[str, Any]:
    """The attachments API's connection info, as Cinder's manager makes it
    (``_connection_create``): the driver's ``data`` fields lifted to the top level beside
    ``driver_volume_type`` (a top-level key wins), plus the ``attachment_id``. The stored info
    is the driver's nested answer, which ``os-initialize_connection`` gives unchanged; Nova
    nests the flat form again itself (``nova.volume.cinder._translate_attachment_ref``)."""
    if not info:
        return {}
    flat = dict(info.get("data") or {})
    flat.update((key, value) for key, value in info.items() if key != "data")
    flat["attachment_id"] = attachment_id
    return flat


def attachment_detail(row: dict[str, Any]) -> dict[str, Any]:
    view = attachment_summary(row)
    view |= {
        "attached_at": format_time(row["attach_time"]) or "",
        "detached_at": format_time(row["detach_time"]) or "",
        "attach_mode": row["attach_mode"],
        "connection_info": flat_connection_info(row["connection_info"], str(row["id"])),
    }
    return view
