"""Cinder's JSON-schema semantics (spec §1.8) as plain checks and pydantic types.

Every check raises :class:`SchemaError` with a jsonschema-like reason; the pydantic
types wrap the same checks, and :func:`validation_message` (re-exported from
``messages``) renders a pydantic ``ValidationError`` the way Cinder renders a
schema failure: ``Invalid input for field/attribute <field>. Value: <value>. <reason>``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from cinderblock.wire.messages import SCHEMA_ERROR_TYPE
from cinderblock.wire.messages import SchemaError as SchemaError
from cinderblock.wire.messages import additional_properties as additional_properties
from cinderblock.wire.messages import field_message as field_message
from cinderblock.wire.messages import not_of_type as not_of_type
from cinderblock.wire.messages import required_property as required_property
from cinderblock.wire.messages import validation_message as validation_message

TRUE_STRINGS = ("True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t")
FALSE_STRINGS = ("False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f")
MAX_VOLUME_SIZE = 2147483647
METADATA_KEY_PATTERN = "^[a-zA-Z0-9-_:. /]{1,255}$"

_DIGITS_RE = re.compile(r"[0-9]+")
_METADATA_KEY_RE = re.compile(r"[a-zA-Z0-9\-_:. /]{1,255}")
_HEX32_RE = re.compile(r"[0-9a-fA-F]{32}")

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")


# --- plain checks -------------------------------------------------------------------


def parse_boolean(value: object) -> bool:
    """Cinder's boolean-ish type: JSON booleans or one of the exact strings of §1.8."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise SchemaError(not_of_type(value, "boolean", "string"))
    if value in TRUE_STRINGS:
        return True
    if value in FALSE_STRINGS:
        return False
    allowed = ", ".join(map(repr, (True, *TRUE_STRINGS, False, *FALSE_STRINGS)))
    raise SchemaError(f"{value!r} is not one of [{allowed}]")


QUERY_TRUE = ("1", "t", "true", "on", "y", "yes")
QUERY_FALSE = ("0", "f", "false", "off", "n", "no")


def parse_query_bool(name: str, value: str | None) -> bool:
    """A boolean query parameter as Cinder's ``utils.get_bool_param`` reads it (oslo's
    strutils strings, any case; absent is False).

    Raises:
        SchemaError: ``Value '<value>' for '<name>' is not a boolean.``
    """
    if value is None:
        return False
    if value.lower() in QUERY_TRUE:
        return True
    if value.lower() in QUERY_FALSE:
        return False
    raise SchemaError(f"Value '{value}' for '{name}' is not a boolean.")


def parse_volume_size(value: object) -> int:
    """Volume-size type: an integer (not bool/float) or a digit string, 1..2147483647."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SchemaError(not_of_type(value, "integer", "string"))
    if isinstance(value, str):
        if not _DIGITS_RE.fullmatch(value):
            raise SchemaError(f"{value!r} does not match '^[0-9]+$'")
        digits = value.lstrip("0") or "0"
        number = int(digits) if len(digits) <= 10 else MAX_VOLUME_SIZE + 1
    else:
        number = value
    if number < 1:
        raise SchemaError(f"{value!r} is less than the minimum of 1")
    if number > MAX_VOLUME_SIZE:
        raise SchemaError(f"{value!r} is greater than the maximum of {MAX_VOLUME_SIZE}")
    return number


def parse_string(
    value: object, *, max_length: int = 255, min_length: int = 0, strip: bool = False
) -> str:
    """A JSON string within length bounds (checked after stripping when ``strip``)."""
    if not isinstance(value, str):
        raise SchemaError(not_of_type(value, "string"))
    text = value.strip() if strip else value
    if len(text) > max_length:
        raise SchemaError(f"{value!r} is too long")
    if len(text) < min_length:
        raise SchemaError(f"{value!r} is too short")
    return text


def is_printable(text: str) -> bool:
    """No control/format/unassigned characters and no line or paragraph separators."""
    for char in text:
        category = unicodedata.category(char)
        if category.startswith("C") or category in ("Zl", "Zp"):
            return False
    return True


def parse_description(value: object) -> str:
    """Description type: a string of at most 255 printable characters."""
    text = parse_string(value)
    if not is_printable(text):
        raise SchemaError(f"{value!r} contains non-printable characters")
    return text


def is_uuid_like(value: object) -> bool:
    """Cinder's ``uuid`` format: 32 hex digits once ``urn:``/``uuid:``/braces/dashes go."""
    if not isinstance(value, str):
        return False
    bare = value.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "")
    return _HEX32_RE.fullmatch(bare) is not None


def parse_uuid(value: object) -> str:
    """A uuid-like string, returned unchanged."""
    if not isinstance(value, str):
        raise SchemaError(not_of_type(value, "string"))
    if not is_uuid_like(value):
        raise SchemaError(f"{value!r} is not a 'uuid'")
    return value


def parse_metadata(value: object) -> dict[str, str]:
    """Metadata type: keys ``^[a-zA-Z0-9-_:. /]{1,255}$``, values strings of ≤255 chars."""
    if not isinstance(value, dict):
        raise SchemaError(not_of_type(value, "object"))
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _METADATA_KEY_RE.fullmatch(key):
            raise SchemaError(f"metadata key {key!r} does not match {METADATA_KEY_PATTERN!r}")
        try:
            result[key] = parse_string(item, max_length=255)
        except SchemaError as err:
            raise SchemaError(err.reason, field=key, value=item) from err
    return result


def nullable(check: Callable[[object], T]) -> Callable[[object], T | None]:
    """``check`` that also lets JSON ``null`` through as None."""

    def run(value: object) -> T | None:
        return None if value is None else check(value)

    run.__name__ = f"nullable_{check.__name__}"
    return run


def optional_name(value: object) -> str | None:
    """Volume name/description: string or null, ≤255 once trimmed; returned trimmed."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SchemaError(not_of_type(value, "string", "null"))
    return parse_string(value, strip=True)


# --- pydantic glue ------------------------------------------------------------------


def field_type(check: Callable[[object], Any]) -> PlainValidator:
    """A pydantic validator running ``check``; its SchemaError becomes a pydantic error."""

    def validate(value: object) -> Any:
        try:
            return check(value)
        except SchemaError as err:
            ctx: dict[str, Any] = {"reason": err.reason}
            if err.field is not None:
                ctx["field"], ctx["value"] = err.field, err.value
            raise PydanticCustomError(SCHEMA_ERROR_TYPE, "{reason}", ctx) from err

    return PlainValidator(validate)


Boolean = Annotated[bool, field_type(parse_boolean)]
OptionalBoolean = Annotated[bool | None, field_type(nullable(parse_boolean))]
VolumeSize = Annotated[int, field_type(parse_volume_size)]
OptionalVolumeSize = Annotated[int | None, field_type(nullable(parse_volume_size))]
Description = Annotated[str, field_type(parse_description)]
OptionalDescription = Annotated[str | None, field_type(nullable(parse_description))]
OptionalName = Annotated[str | None, field_type(optional_name)]
Uuid = Annotated[str, field_type(parse_uuid)]
OptionalUuid = Annotated[str | None, field_type(nullable(parse_uuid))]
Metadata = Annotated[dict[str, str], field_type(parse_metadata)]
OptionalMetadata = Annotated[dict[str, str] | None, field_type(nullable(parse_metadata))]


def optional_string(max_length: int = 255, min_length: int = 0) -> PlainValidator:
    """Validator for ``{"type": ["string", "null"], "minLength": .., "maxLength": ..}``."""

    def check(value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise SchemaError(not_of_type(value, "string", "null"))
        return parse_string(value, max_length=max_length, min_length=min_length)

    return field_type(check)


def validate_object(
    model: type[ModelT],
    value: object,
    *,
    field: str | None = None,
    hidden: Collection[str] = (),
    allow_unknown: bool = False,
) -> ModelT:
    """Validate a JSON object into ``model`` with Cinder's rules.

    Args:
        model: a pydantic model declared with ``extra="forbid"``.
        value: the decoded JSON value.
        field: the name the object is reported under (None at the top level).
        hidden: keys that do not exist at the request's microversion; they are
            unexpected keys (or ignored with ``allow_unknown``).
        allow_unknown: ignore unknown keys (``additionalProperties: true``).

    Raises:
        SchemaError: the value is not an object or breaks the model; ``str()`` of
            the error is Cinder's message.
    """
    if not isinstance(value, dict):
        raise SchemaError(not_of_type(value, "object"), field=field, value=value)
    known = {info.alias or name for name, info in model.model_fields.items()}
    data = {key: item for key, item in value.items() if key not in hidden}
    if allow_unknown:
        data = {key: item for key, item in data.items() if key in known}
    unexpected = [] if allow_unknown else [k for k in value if k not in known or k in hidden]
    try:
        result = model.model_validate(data)
    except ValidationError as err:
        if any(e["type"] != "extra_forbidden" for e in err.errors()):
            raise SchemaError(validation_message(err, root=field, root_value=value)) from err
    else:
        if not unexpected:
            return result
    raise SchemaError(additional_properties(unexpected), field=field, value=value)
