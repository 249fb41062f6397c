"""Volume types on the wire: request models and the view (spec §5.2)."""

from __future__ import annotations

import re
from typing import Any, Self

from pydantic import BaseModel, ConfigDict

from cinderblock.wire.faults import BadRequest
from cinderblock.wire.schema import parse_boolean

SPEC_KEY = re.compile(r"^[a-zA-Z0-9\-_:.]{1,255}$")
# What non-admins may see of a type's extra specs.
USER_VISIBLE_SPECS = frozenset({"multiattach", "replication_enabled", "RESKEY:availability_zones"})
IS_PUBLIC = "os-volume-type-access:is_public"


def _object(body: object, key: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise BadRequest(f"Invalid input: the body must be an object with an object '{key}'.")
    extra = [k for k in body if k != key]
    if extra:
        raise BadRequest(
            f"Additional properties are not allowed ({', '.join(map(repr, extra))} were unexpected)"
        )
    value: dict[str, Any] = body[key]
    return value


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise BadRequest(
            "Invalid input for field/attribute name: a non-blank string of at "
            "most 255 characters is required."
        )
    return value.strip()


def _description(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > 255):
        raise BadRequest(
            "Invalid input for field/attribute description: a string of at most "
            "255 characters or null is required."
        )
    return value


def _public(value: object) -> bool:
    try:
        return parse_boolean(value)
    except ValueError:
        raise BadRequest(
            f"Invalid value '{value}' for is_public. Accepted values: True or False."
        ) from None


def parse_specs(value: object) -> dict[str, str | None]:
    if not isinstance(value, dict):
        raise BadRequest("Invalid input for field/attribute extra_specs: an object is required.")
    for key, item in value.items():
        if not SPEC_KEY.match(key):
            raise BadRequest(
                f"Invalid input for field/attribute extra_specs: key {key!r} "
                "does not match '^[a-zA-Z0-9-_:.]{1,255}$'."
            )
        if item is not None and (not isinstance(item, str) or len(item) > 255):
            raise BadRequest(
                f"Invalid input for field/attribute extra_specs: the value of "
                f"{key!r} must be a string of at most 255 characters."
            )
    return dict(value)


class TypeCreateRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str | None
    is_public: bool
    extra_specs: dict[str, str | None]

    @classmethod
    def parse(cls, body: object) -> Self:
        fields = _object(body, "volume_type")
        unknown = set(fields) - {"name", "description", "extra_specs", IS_PUBLIC}
        if unknown:
            raise BadRequest(
                f"Additional properties are not allowed ({sorted(unknown)} were unexpected)"
            )
        if "name" not in fields:
            raise BadRequest("'name' is a required property")
        return cls(
            name=_name(fields["name"]),
            description=_description(fields.get("description")),
            is_public=_public(fields[IS_PUBLIC]) if IS_PUBLIC in fields else True,
            extra_specs=parse_specs(fields.get("extra_specs") or {}),
        )


class TypeUpdateRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    changes: dict[str, Any]

    @classmethod
    def parse(cls, body: object) -> Self:
        fields = _object(body, "volume_type")
        unknown = set(fields) - {"name", "description", "is_public"}
        if unknown:
            raise BadRequest(
                f"Additional properties are not allowed ({sorted(unknown)} were unexpected)"
            )
        changes: dict[str, Any] = {}
        if fields.get("name") is not None:
            changes["name"] = _name(fields["name"])
        if "description" in fields:
            changes["description"] = _description(fields["description"])
        if fields.get("is_public") is not None:
            changes["is_public"] = _public(fields["is_public"])
        if not changes:
            raise BadRequest(
                "Specify volume type name, description, is_public or a combination thereof."
            )
        return cls(changes=changes)


def type_view(row: dict[str, Any], *, is_admin: bool) -> dict[str, Any]:
    specs = row["extra_specs"]
    if not is_admin:
        specs = {k: v for k, v in specs.items() if k in USER_VISIBLE_SPECS}
    view: dict[str, Any] = {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "is_public": row["is_public"],
        IS_PUBLIC: row["is_public"],
        "extra_specs": specs,
    }
    if is_admin:
        view["qos_specs_id"] = None
    return view
