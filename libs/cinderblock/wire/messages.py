"""Cinder's wording of schema failures (spec §1.6 "Validation errors").

``Invalid input for field/attribute <field>. Value: <value>. <reason>``, where the
reason reads like jsonschema's (``0 is less than the minimum of 1``), or the bare
reason for problems with the top-level object.
"""

from __future__ import annotations

from collections.abc import Collection

from pydantic import ValidationError
from pydantic_core import ErrorDetails

SCHEMA_ERROR_TYPE = "cinder_schema"
"""The pydantic error type raised by :func:`cinderblock.wire.schema.field_type`."""
ABSENT: object = object()
"""Marks "no value to show" (distinct from JSON null)."""


class SchemaError(ValueError):
    """Raised when a value breaks a schema rule.

    ``reason`` is the jsonschema-like text; ``field``/``value`` name the offending
    attribute when known (``str()`` then gives Cinder's full message).
    """

    def __init__(self, reason: str, *, field: str | None = None, value: object = ABSENT) -> None:
        self.reason = reason
        self.field = field
        self.value = value
        super().__init__(field_message(field, value, reason) if field else reason)


def field_message(field: str | None, value: object, reason: str) -> str:
    """Cinder's rendering of a schema failure at ``field`` (plain reason at top level)."""
    if not field:
        return reason
    if value is ABSENT:
        return f"Invalid input for field/attribute {field}. {reason}"
    shown = value if isinstance(value, str) else repr(value)
    return f"Invalid input for field/attribute {field}. Value: {shown}. {reason}"


def not_of_type(value: object, *types: str) -> str:
    """jsonschema's type-mismatch text: ``None is not of type 'integer', 'string'``."""
    return f"{value!r} is not of type " + ", ".join(repr(t) for t in types)


def additional_properties(keys: Collection[str]) -> str:
    """jsonschema's text for unexpected keys."""
    verb = "was" if len(keys) == 1 else "were"
    listed = ", ".join(repr(k) for k in keys)
    return f"Additional properties are not allowed ({listed} {verb} unexpected)"


def required_property(key: str) -> str:
    """jsonschema's text for a missing key."""
    return f"{key!r} is a required property"


_PRIORITY = {"missing": 1, "extra_forbidden": 2}


def _lookup(root_value: object, path: tuple[int | str, ...]) -> object:
    node = root_value
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return ABSENT
        node = node[part]
    return node


def validation_message(
    exc: ValidationError, *, root: str | None = None, root_value: object = ABSENT
) -> str:
    """Cinder-style text for the first problem in ``exc``.

    Problems with a field's value come first, then missing keys, then unexpected
    keys (jsonschema's keyword order). ``root``/``root_value`` name the object that
    was validated (e.g. ``"os-extend"`` and its payload) so that top-level problems
    are reported against it as Cinder does; without them they are the bare reason.
    """
    errors = sorted(exc.errors(include_url=False), key=lambda e: _PRIORITY.get(e["type"], 0))
    first = errors[0]
    loc = tuple(first["loc"])
    if first["type"] == "missing":
        return _at(loc[:-1], required_property(str(loc[-1])), root, root_value, first["input"])
    if first["type"] == "extra_forbidden":
        parent = loc[:-1]
        keys = [
            str(e["loc"][-1])
            for e in errors
            if e["type"] == "extra_forbidden" and tuple(e["loc"][:-1]) == parent
        ]
        return _at(parent, additional_properties(keys), root, root_value, ABSENT)
    return _value_message(first, loc, root, root_value)


def _value_message(
    error: ErrorDetails, loc: tuple[int | str, ...], root: str | None, root_value: object
) -> str:
    ctx = error.get("ctx") or {}
    if error["type"] == SCHEMA_ERROR_TYPE:
        reason = str(ctx["reason"])
        if "field" in ctx:
            return field_message(str(ctx["field"]), ctx["value"], reason)
    elif error["type"] in ("model_type", "dict_type", "model_attributes_type"):
        reason = not_of_type(error["input"], "object")
    else:
        reason = error["msg"]
    if not loc:
        return field_message(root, root_value, reason)
    return field_message(str(loc[-1]), error["input"], reason)


def _at(
    parent: tuple[int | str, ...],
    reason: str,
    root: str | None,
    root_value: object,
    fallback: object,
) -> str:
    """Render ``reason`` against the object at ``parent`` (the root when empty)."""
    if not parent:
        return field_message(root, root_value if root_value is not ABSENT else fallback, reason)
    value = _lookup(root_value, parent) if root_value is not ABSENT else fallback
    return field_message(str(parent[-1]), value, reason)
