"""Request bodies of ``POST /volumes`` and ``PUT /volumes/{id}`` (spec §2.3, §2.4)."""

from __future__ import annotations

from collections.abc import Collection
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field

from cinderblock.wire.faults import BadRequest, invalid_input
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.schema import (
    OptionalBoolean,
    OptionalMetadata,
    OptionalName,
    OptionalUuid,
    OptionalVolumeSize,
    SchemaError,
    additional_properties,
    field_message,
    field_type,
    not_of_type,
    optional_string,
    parse_metadata,
    required_property,
    validate_object,
)

SCHEDULER_HINTS = "OS-SCH-HNT:scheduler_hints"
STRICT_SCHEMA_VERSION = APIVersion(3, 53)
MULTIATTACH_REMOVED = (
    "The multiattach parameter has been removed. Use a volume type whose extra spec "
    "'multiattach' is '<is> True' to create a multiattach volume."
)

OptionalString255 = Annotated[str | None, optional_string(255)]
# Update's metadata may be omitted but not null: None reaches parse_metadata and fails.
UpdateMetadata = Annotated[dict[str, str] | None, field_type(parse_metadata)]


def _split_body(body: object, allowed_top: Collection[str]) -> tuple[dict[str, Any], object]:
    """The body and its ``volume`` value; top-level problems raise SchemaError."""
    if not isinstance(body, dict):
        raise SchemaError(not_of_type(body, "object"))
    if "volume" in body and not isinstance(body["volume"], dict):
        raise SchemaError(
            not_of_type(body["volume"], "object"), field="volume", value=body["volume"]
        )
    hints = body.get(SCHEDULER_HINTS)
    if SCHEDULER_HINTS in allowed_top and hints is not None and not isinstance(hints, dict):
        raise SchemaError(not_of_type(hints, "object", "null"), field=SCHEDULER_HINTS, value=hints)
    if "volume" not in body:
        raise SchemaError(required_property("volume"))
    unexpected = [key for key in body if key not in allowed_top]
    if unexpected:
        raise SchemaError(additional_properties(unexpected))
    return body, body["volume"]


def _pick(model: BaseModel, new_key: str, legacy_key: str) -> str | None:
    """Cinder's precedence: ``name`` (when sent, even null) over ``display_name``."""
    key = new_key if new_key in model.model_fields_set else legacy_key
    value: str | None = getattr(model, key)
    return value


class _VolumeCreateFields(BaseModel):
    """The ``volume`` object of a create body, as sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    SINCE: ClassVar[MappingProxyType[str, APIVersion]] = MappingProxyType(
        {
            "group_id": APIVersion(3, 13),
            "backup_id": APIVersion(3, 47),
        }
    )

    name: OptionalName = None
    description: OptionalName = None
    display_name: OptionalName = None
    display_description: OptionalName = None
    volume_type: OptionalString255 = None
    metadata: OptionalMetadata = None
    snapshot_id: OptionalUuid = None
    source_volid: OptionalUuid = None
    consistencygroup_id: OptionalUuid = None
    size: OptionalVolumeSize = None
    availability_zone: Annotated[str | None, optional_string(255, min_length=1)] = None
    multiattach: OptionalBoolean = None
    image_id: OptionalString255 = None
    image_ref: OptionalString255 = Field(default=None, alias="imageRef")
    group_id: OptionalString255 = None
    backup_id: OptionalUuid = None


class VolumeCreateRequest(BaseModel):
    """A validated, normalized ``POST /volumes`` body.

    ``name``/``description`` are trimmed and already resolved from the legacy
    ``display_*`` keys; ``metadata`` is ``{}`` when absent or null; ``image_ref`` is
    ``image_id`` when sent, else ``imageRef`` (Cinder's controller). ``group_id`` is read
    from 3.13 and ``backup_id`` from 3.47 (earlier they are unknown keys, hence ignored).
    Sources are only parsed here; whether they are supported is the caller's call.
    """

    model_config = ConfigDict(frozen=True)

    name: str | None = None
    description: str | None = None
    size: int | None = None
    volume_type: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    availability_zone: str | None = None
    snapshot_id: str | None = None
    source_volid: str | None = None
    consistencygroup_id: str | None = None
    group_id: str | None = None
    backup_id: str | None = None
    image_ref: str | None = None
    scheduler_hints: dict[str, Any] | None = None

    @classmethod
    def parse(cls, body: object, version: APIVersion) -> Self:
        """Validate a create body at ``version``.

        Raises:
            BadRequest: schema failure, ``multiattach: true``, or no size and no
                snapshot/source volume/backup to take it from.
        """
        try:
            top, raw_volume = _split_body(body, (SCHEDULER_HINTS, "volume"))
            hidden = [key for key, since in _VolumeCreateFields.SINCE.items() if version < since]
            fields = validate_object(
                _VolumeCreateFields,
                raw_volume,
                field="volume",
                hidden=hidden,
                allow_unknown=version < STRICT_SCHEMA_VERSION,
            )
        except SchemaError as err:
            raise BadRequest(str(err)) from err
        if fields.multiattach:
            raise BadRequest(MULTIATTACH_REMOVED)
        if fields.size is None and not (
            fields.snapshot_id or fields.source_volid or fields.backup_id
        ):
            raise invalid_input("Volume size 'None' must be an integer and greater than 0")
        return cls(
            name=_pick(fields, "name", "display_name"),
            description=_pick(fields, "description", "display_description"),
            size=fields.size,
            volume_type=fields.volume_type,
            metadata=fields.metadata or {},
            availability_zone=fields.availability_zone,
            snapshot_id=fields.snapshot_id,
            source_volid=fields.source_volid,
            consistencygroup_id=fields.consistencygroup_id,
            group_id=fields.group_id,
            backup_id=fields.backup_id,
            image_ref=(
                fields.image_id if "image_id" in fields.model_fields_set else fields.image_ref
            ),
            scheduler_hints=top.get(SCHEDULER_HINTS),
        )


class _VolumeUpdateFields(BaseModel):
    """The ``volume`` object of an update body, as sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: OptionalName = None
    description: OptionalName = None
    display_name: OptionalName = None
    display_description: OptionalName = None
    metadata: UpdateMetadata = None


_UPDATE_KEYS = ("name", "description", "display_name", "display_description", "metadata")


class VolumeUpdateRequest(BaseModel):
    """A validated ``PUT /volumes/{id}`` body; only keys that were sent count.

    ``name``/``description`` hold the resolved values (``name`` wins over
    ``display_name`` when both are sent); ``metadata`` replaces all user metadata.
    """

    model_config = ConfigDict(frozen=True)

    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None
    sent: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, body: object, version: APIVersion) -> Self:
        """Validate an update body at ``version`` (from 3.53 at least one key).

        Raises:
            BadRequest: schema failure, unknown key, or an empty object from 3.53.
        """
        try:
            _, raw_volume = _split_body(body, ("volume",))
            fields = validate_object(_VolumeUpdateFields, raw_volume, field="volume")
        except SchemaError as err:
            raise BadRequest(str(err)) from err
        if version >= STRICT_SCHEMA_VERSION and not raw_volume:
            keys = ", ".join(repr(key) for key in _UPDATE_KEYS)
            reason = f"{{}} is not valid under any of the given schemas (send one of {keys})"
            raise BadRequest(field_message("volume", raw_volume, reason))
        sent: set[str] = set()
        if fields.model_fields_set & {"name", "display_name"}:
            sent.add("name")
        if fields.model_fields_set & {"description", "display_description"}:
            sent.add("description")
        if "metadata" in fields.model_fields_set:
            sent.add("metadata")
        return cls(
            name=_pick(fields, "name", "display_name"),
            description=_pick(fields, "description", "display_description"),
            metadata=fields.metadata,
            sent=frozenset(sent),
        )

    def changes(self) -> dict[str, object]:
        """The fields to change: a subset of ``name``, ``description``, ``metadata``."""
        return {
            key: getattr(self, key)
            for key in ("name", "description", "metadata")
            if key in self.sent
        }
