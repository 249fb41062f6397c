"""Request models and views of snapshots (spec §5.1) and the revert action (§3.3)."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict

from cinderblock.wire.actions_base import ActionBody
from cinderblock.wire.faults import BadRequest, resource_not_found
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.schema import (
    OptionalBoolean,
    OptionalMetadata,
    OptionalName,
    SchemaError,
    Uuid,
    additional_properties,
    not_of_type,
    required_property,
    validate_object,
)
from cinderblock.wire.views import ViewContext, format_time

REVERT_VERSION = APIVersion(3, 40)
FORCE_IGNORED_VERSION = APIVersion(3, 66)


def _snapshot_object(body: object) -> object:
    if not isinstance(body, dict):
        raise SchemaError(not_of_type(body, "object"))
    if "snapshot" not in body:
        raise SchemaError(required_property("snapshot"))
    extra = [k for k in body if k != "snapshot"]
    if extra:
        raise SchemaError(additional_properties(extra))
    return body["snapshot"]


class _CreateFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    volume_id: Uuid
    name: OptionalName = None
    description: OptionalName = None
    display_name: OptionalName = None
    display_description: OptionalName = None
    force: OptionalBoolean = None
    metadata: OptionalMetadata = None


class SnapshotCreateRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    volume_id: str
    name: str | None
    description: str | None
    force: bool | None
    metadata: dict[str, str]

    @classmethod
    def parse(cls, body: object, version: APIVersion) -> Self:
        try:
            fields = validate_object(_CreateFields, _snapshot_object(body), field="snapshot")
        except SchemaError as err:
            raise BadRequest(str(err)) from err
        if version.matches(FORCE_IGNORED_VERSION) and fields.force is False:
            raise BadRequest(
                "Invalid input received: Since microversion 3.66 the 'force' "
                "flag is invalid when set to False."
            )
        name_set = "name" in fields.model_fields_set
        description_set = "description" in fields.model_fields_set
        return cls(
            volume_id=fields.volume_id,
            name=fields.name if name_set else fields.display_name,
            description=fields.description if description_set else fields.display_description,
            force=fields.force,
            metadata=dict(fields.metadata or {}),
        )


class _UpdateFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: OptionalName = None
    description: OptionalName = None
    display_name: OptionalName = None
    display_description: OptionalName = None


class SnapshotUpdateRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    changes: dict[str, Any]

    @classmethod
    def parse(cls, body: object, version: APIVersion) -> Self:
        try:
            fields = validate_object(_UpdateFields, _snapshot_object(body), field="snapshot")
        except SchemaError as err:
            raise BadRequest(str(err)) from err
        sent = fields.model_fields_set
        if not sent:
            raise BadRequest("Invalid input received: send name or description to update.")
        changes: dict[str, Any] = {}
        if sent & {"name", "display_name"}:
            changes["name"] = fields.name if "name" in sent else fields.display_name
        if sent & {"description", "display_description"}:
            changes["description"] = (
                fields.description if "description" in sent else fields.display_description
            )
        return cls(changes=changes)


class Revert(ActionBody):
    """``revert`` (3.40+): ``snapshot_id`` string or null; other keys inside are allowed."""

    ACTION: ClassVar[str] = "revert"
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    snapshot_id: str | None = None

    @classmethod
    def parse(cls, payload: object, version: APIVersion) -> Self:
        if not version.matches(REVERT_VERSION):
            raise resource_not_found()
        if not isinstance(payload, dict):
            raise BadRequest(
                f"Invalid input for field/attribute revert. Value: {payload}. "
                f"{not_of_type(payload, 'object')}"
            )
        value = payload.get("snapshot_id")
        if value is not None and not isinstance(value, str):
            raise BadRequest(
                f"Invalid input for field/attribute snapshot_id. Value: {value}. "
                f"{not_of_type(value, 'string', 'null')}"
            )
        return cls(snapshot_id=value)


def snapshot_view(row: dict[str, Any], ctx: ViewContext, *, extended: bool) -> dict[str, Any]:
    """Cinder's snapshot view at the request's microversion."""
    view: dict[str, Any] = {
        "id": row["id"],
        "created_at": format_time(row["created_at"]),
        "updated_at": format_time(row["updated_at"]),
        "name": row["name"],
        "description": row["description"],
        "volume_id": row["volume_id"],
        "status": row["status"],
        "size": row["size"],
        "metadata": row["metadata"],
    }
    if extended:
        view["os-extended-snapshot-attributes:project_id"] = row["project_id"]
        view["os-extended-snapshot-attributes:progress"] = row["progress"]
    if ctx.version.matches("3.14"):
        view["group_snapshot_id"] = None
    if ctx.version.matches("3.41"):
        view["user_id"] = row["user_id"]
    if ctx.version.matches("3.65"):
        view["consumes_quota"] = True
    return view


def snapshot_summary(row: dict[str, Any], ctx: ViewContext) -> dict[str, Any]:
    return snapshot_view(row, ctx, extended=False)
