"""Request models of os-migrate_volume and os-migrate_volume_completion (spec §3.12 and §3.13)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self

from cinderblock.wire.actions_base import ActionBody
from cinderblock.wire.faults import BadRequest
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.schema import (
    Boolean,
    SchemaError,
    Uuid,
    field_type,
    not_of_type,
    optional_string,
    parse_boolean,
)

CLUSTER_VERSION = APIVersion(3, 16)


class MigrateVolume(ActionBody):
    """Below 3.16 ``host`` is required; from 3.16 exactly one of ``host``/``cluster``."""

    ACTION: ClassVar[str] = "os-migrate_volume"
    SINCE: ClassVar[Any] = {"cluster": CLUSTER_VERSION}

    host: Annotated[str | None, optional_string(max_length=255)] = None
    cluster: Annotated[str | None, optional_string(max_length=255)] = None
    force_host_copy: Boolean = False
    lock_volume: Boolean = False

    @classmethod
    def parse(cls, payload: object, version: APIVersion) -> Self:
        model = super().parse(payload, version)
        if version < CLUSTER_VERSION:
            if "host" not in model.model_fields_set:
                raise BadRequest(
                    f"Invalid input for field/attribute {cls.ACTION}. Value: {payload}. "
                    "'host' is a required property"
                )
            if not model.host:
                raise BadRequest("Host field is missing.")
        elif bool(model.host) == bool(model.cluster):
            raise BadRequest("One and only one of cluster and host must be set.")
        return model


def _error_flag(value: object) -> Any:
    """Cinder reads ``error`` by Python truthiness, so the string "false" meant an error (a
    QUIRK). Here boolean-ish strings are parsed; any other non-empty string is an error."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if not isinstance(value, str):
        raise SchemaError(not_of_type(value, "string", "boolean", "null"))
    try:
        return parse_boolean(value)
    except ValueError:
        return bool(value)


class MigrateVolumeCompletion(ActionBody):
    ACTION: ClassVar[str] = "os-migrate_volume_completion"

    new_volume: Uuid
    error: Annotated[bool, field_type(_error_flag)] = False
