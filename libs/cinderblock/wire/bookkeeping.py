"""Request models of the attachment-bookkeeping and admin actions (spec §3.2, §3.4 to 3.10,
§3.14, §3.17 to 3.23). Registered in ``actions.ACTION_MODELS``."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

from cinderblock.wire.actions_base import ActionBody
from cinderblock.wire.faults import BadRequest
from cinderblock.wire.metadata import IMAGE_METADATA
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.schema import (
    Boolean,
    SchemaError,
    Uuid,
    field_type,
    not_of_type,
    optional_string,
    parse_string,
)

# Cinder's enums (cinder.objects.fields), in its order: its refusal prints the collection.
VOLUME_STATUSES = (
    "creating",
    "available",
    "deleting",
    "error",
    "error_deleting",
    "error_managing",
    "managing",
    "attaching",
    "in-use",
    "detaching",
    "maintenance",
    "restoring-backup",
    "error_restoring",
    "reserved",
    "awaiting-transfer",
    "backing-up",
    "error_backing-up",
    "error_extending",
    "downloading",
    "uploading",
    "retyping",
    "extending",
)
ATTACH_STATUSES = ["attached", "detached"]  # a list in Cinder's validator
MIGRATION_STATUSES = ("migrating", "error", "success", "completing", "none", "starting")
RESET_FIELDS = {
    "status": ("Volume status", VOLUME_STATUSES),
    "attach_status": ("Volume attach status", ATTACH_STATUSES),
    "migration_status": ("Volume migration status", MIGRATION_STATUSES),
}


class AnyPayload(ActionBody):
    """Actions whose value Cinder does not check (``null``, ``{}``, ``""``… all accepted)."""

    @classmethod
    def parse(cls, payload: object, version: APIVersion) -> Self:
        return cls()


class Reserve(AnyPayload):
    ACTION: ClassVar[str] = "os-reserve"


class Unreserve(AnyPayload):
    ACTION: ClassVar[str] = "os-unreserve"


class BeginDetaching(AnyPayload):
    ACTION: ClassVar[str] = "os-begin_detaching"


class RollDetaching(AnyPayload):
    ACTION: ClassVar[str] = "os-roll_detaching"


class ForceDelete(AnyPayload):
    ACTION: ClassVar[str] = "os-force_delete"


class Unmanage(AnyPayload):
    ACTION: ClassVar[str] = "os-unmanage"


class ShowImageMetadata(AnyPayload):
    ACTION: ClassVar[str] = "os-show_image_metadata"


def _reset_value(value: object) -> str | None:
    """A reset value after Cinder's format check (``ResetStatus.parse``): lower case; an
    empty string is no value."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SchemaError(not_of_type(value, "string", "null"))
    return value.lower() or None


class ResetStatus(ActionBody):
    """``os-reset_status``: values compared case-insensitively, stored lower case; an empty
    string is no value; the migration status ``none`` means null.

    Cinder's order: the body needs one non-empty value ("Must specify …"), then each field
    its type and its enum (Cinder's format checkers answer their own message, not the
    schema's "Invalid input for field/attribute"), then unknown keys."""

    ACTION: ClassVar[str] = "os-reset_status"

    status: Annotated[str | None, field_type(_reset_value)] = None
    attach_status: Annotated[str | None, field_type(_reset_value)] = None
    migration_status: Annotated[str | None, field_type(_reset_value)] = None

    @classmethod
    def parse(cls, payload: object, version: APIVersion) -> Self:
        if isinstance(payload, dict):
            if not any(payload.get(key) for key in RESET_FIELDS):
                raise BadRequest(
                    "Must specify 'status', 'attach_status' or 'migration_status' for update."
                )
            for key, (label, allowed) in RESET_FIELDS.items():
                value = payload.get(key)
                if value is not None and not isinstance(value, str):
                    break  # the schema's type error, below
                if value and value.lower() not in allowed:
                    raise BadRequest(f"{label}: {value} is invalid, valid statuses are: {allowed}.")
        return super().parse(payload, version)

    @property
    def migration_given(self) -> bool:
        return self.migration_status is not None

    @property
    def migration_value(self) -> str | None:
        return None if self.migration_status in (None, "none") else self.migration_status


def _image_metadata(value: object) -> dict[str, str]:
    """Cinder's ``image_metadata``: keys ``^[a-zA-Z0-9-_:. /]{1,255}$`` (none reserved: its
    API refuses no key by name), values strings of at most 65535 UTF-8 bytes."""
    IMAGE_METADATA.check_object(value, "metadata")
    return dict(value)  # type: ignore[call-overload]


class SetImageMetadata(ActionBody):
    ACTION: ClassVar[str] = "os-set_image_metadata"

    metadata: Annotated[dict[str, str], field_type(_image_metadata)]


class UnsetImageMetadata(ActionBody):
    ACTION: ClassVar[str] = "os-unset_image_metadata"

    key: Annotated[str, field_type(lambda v: parse_string(v, max_length=255, min_length=1))]


class Attach(ActionBody):
    """``os-attach``: mountpoint, and an instance or a host."""

    ACTION: ClassVar[str] = "os-attach"

    mountpoint: Annotated[str | None, optional_string(max_length=255, min_length=1)]
    instance_uuid: Uuid | None = None
    host_name: Annotated[str | None, optional_string(max_length=255)] = None
    mode: Literal["rw", "ro"] = "rw"

    @classmethod
    def parse(cls, payload: object, version: APIVersion) -> Self:
        model = super().parse(payload, version)
        if model.mountpoint is None:
            raise BadRequest(
                "Invalid input for field/attribute mountpoint. Value: None. "
                "None is not of type 'string'"
            )
        if "instance_uuid" not in model.model_fields_set and (
            "host_name" not in model.model_fields_set
        ):
            raise BadRequest(
                f"Invalid input for field/attribute {cls.ACTION}. Value: "
                f"{payload}. 'instance_uuid' or 'host_name' is required"
            )
        return model


class Detach(ActionBody):
    """``os-detach``; ``null`` as the whole value means ``{}`` (Cinder answers 500)."""

    ACTION: ClassVar[str] = "os-detach"

    attachment_id: Uuid | None = None

    @classmethod
    def parse(cls, payload: object, version: APIVersion) -> Self:
        return super().parse({} if payload is None else payload, version)


def _connector(value: object) -> Any:
    if value is not None and not isinstance(value, dict | str):
        raise SchemaError(not_of_type(value, "object", "string", "null"))
    return value


class ForceDetach(ActionBody):
    ACTION: ClassVar[str] = "os-force_detach"

    attachment_id: Annotated[str | None, optional_string(max_length=255)] = None
    connector: Annotated[Any, field_type(_connector)] = None


class TerminateConnection(ActionBody):
    ACTION: ClassVar[str] = "os-terminate_connection"

    connector: Annotated[Any, field_type(_connector)]


class InitializeConnection(ActionBody):
    ACTION: ClassVar[str] = "os-initialize_connection"

    connector: Annotated[Any, field_type(_connector)]

    @classmethod
    def parse(cls, payload: object, version: APIVersion) -> Self:
        model = super().parse(payload, version)
        if model.connector is None:
            raise BadRequest(
                "Invalid input for field/attribute connector. Value: None. "
                "None is not of type 'object', 'string'"
            )
        return model


class UpdateReadonlyFlag(ActionBody):
    ACTION: ClassVar[str] = "os-update_readonly_flag"

    readonly: Boolean


class RetypeAction(ActionBody):
    """``os-retype``: the new type's name or id; ``migration_policy`` never (default) or
    on-demand (null is not one of the two: 400)."""

    ACTION: ClassVar[str] = "os-retype"

    new_type: Annotated[str, field_type(lambda v: parse_string(v, max_length=255, min_length=1))]
    migration_policy: Literal["never", "on-demand"] = "never"


DISK_FORMATS = ("raw", "vmdk", "vdi", "qcow2", "vhd", "vhdx", "ploop")


class UploadImage(ActionBody):
    """``os-volume_upload_image``; ``visibility`` and ``protected`` exist from 3.1."""

    ACTION: ClassVar[str] = "os-volume_upload_image"
    SINCE: ClassVar[Any] = {"visibility": APIVersion(3, 1), "protected": APIVersion(3, 1)}

    image_name: Annotated[str, field_type(lambda v: parse_string(v, max_length=255, min_length=1))]
    force: Boolean = False
    disk_format: Literal["raw", "vmdk", "vdi", "qcow2", "vhd", "vhdx", "ploop"] = "raw"
    container_format: Annotated[str | None, optional_string(max_length=255)] = "bare"
    visibility: Literal["community", "public", "private", "shared"] = "private"
    protected: Boolean = False


BOOKKEEPING_MODELS: tuple[type[ActionBody], ...] = (
    RetypeAction,
    UploadImage,
    Reserve,
    Unreserve,
    BeginDetaching,
    RollDetaching,
    ForceDelete,
    Unmanage,
    ShowImageMetadata,
    ResetStatus,
    SetImageMetadata,
    UnsetImageMetadata,
    Attach,
    Detach,
    ForceDetach,
    TerminateConnection,
    InitializeConnection,
    UpdateReadonlyFlag,
)
