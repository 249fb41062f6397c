"""Volume-type encryption on the wire (Cinder's ``api/schemas/volume_type_encryption.py``
and the controller's replies).

Body ``{"encryption": {...}}`` and nothing else; inside: ``provider`` (string ≤255),
``control_location`` (``front-end`` | ``back-end``), ``cipher`` (string ≤255 or null),
``key_size`` (an integer ≥ 0, an integer-like string, or null). Create needs ``provider`` and
``control_location``; update needs nothing. Other keys inside are allowed by Cinder's schema
and ignored here."""

from __future__ import annotations

from typing import Any

from cinderblock.wire.faults import BadRequest

DB_MAX_INT = 0x7FFFFFFF
ENCRYPTION_FIELDS = ("provider", "cipher", "key_size", "control_location")
CONTROL_LOCATIONS = ("front-end", "back-end")


def _invalid(field: str, why: str) -> BadRequest:
    return BadRequest(f"Invalid input for field/attribute {field}. {why}")


def _string(fields: dict[str, Any], key: str, *, nullable: bool) -> None:
    value = fields[key]
    if value is None and nullable:
        return
    if not isinstance(value, str):
        raise _invalid(key, f"Value: {value}. {value!r} is not of type 'string'")
    if len(value) > 255:
        raise _invalid(key, f"Value: {value}. {value!r} is too long")


def _key_size(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _invalid("key_size", f"Value: {value}. {value!r} is not of type 'string', 'integer'")
    if isinstance(value, int) and not 0 <= value <= DB_MAX_INT:
        raise _invalid("key_size", f"Value: {value}. {value} is out of range")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise BadRequest("Invalid input received: key_size must be an integer.") from None
    if not -DB_MAX_INT - 1 <= number <= DB_MAX_INT:
        raise BadRequest("Invalid input received: key_size must be an integer.")
    return number


def parse_encryption(body: object, *, create: bool) -> dict[str, Any]:
    """The known fields of a create or update body, checked (key_size as an int).

    Raises:
        BadRequest: the body breaks Cinder's schema.
    """
    if not isinstance(body, dict) or "encryption" not in body:
        raise BadRequest("Invalid input for field/attribute encryption. 'encryption' is required")
    extra = [k for k in body if k != "encryption"]
    if extra:
        raise BadRequest(
            f"Additional properties are not allowed ({', '.join(map(repr, extra))} were unexpected)"
        )
    fields = body["encryption"]
    if not isinstance(fields, dict):
        raise _invalid("encryption", f"Value: {fields}. {fields!r} is not of type 'object'")
    if create:
        for required in ("provider", "control_location"):
            if required not in fields:
                raise BadRequest(
                    f"Invalid input for field/attribute encryption. '{required}' is a "
                    "required property"
                )
    if "provider" in fields:
        _string(fields, "provider", nullable=False)
    if "cipher" in fields:
        _string(fields, "cipher", nullable=True)
    if "control_location" in fields and fields["control_location"] not in CONTROL_LOCATIONS:
        value = fields["control_location"]
        raise _invalid(
            "control_location",
            f"Value: {value}. {value!r} is not one of ['front-end', 'back-end']",
        )
    specs = {k: fields[k] for k in ENCRYPTION_FIELDS if k in fields}
    if "key_size" in specs:
        specs["key_size"] = _key_size(specs["key_size"])
    return specs


def encryption_view(row: dict[str, Any]) -> dict[str, Any]:
    """``GET /types/{id}/encryption``: the flat record (Cinder's encryption row), or ``{}``
    when the type has no encryption."""
    encryption = row.get("encryption")
    if not encryption:
        return {}
    return {
        "volume_type_id": row["id"],
        "encryption_id": encryption["encryption_id"],
        "provider": encryption["provider"],
        "cipher": encryption["cipher"],
        "key_size": encryption["key_size"],
        "control_location": encryption["control_location"],
        "deleted": False,
        "created_at": _time(row.get("encryption_created_at")),
        "updated_at": _time(row.get("encryption_updated_at")),
        "deleted_at": None,
    }


def created_view(row: dict[str, Any]) -> dict[str, Any]:
    """``POST /types/{id}/encryption`` reply (the create-response sample's keys)."""
    view = encryption_view(row)
    keys = ("volume_type_id", "encryption_id", *ENCRYPTION_FIELDS)
    return {"encryption": {k: view[k] for k in keys}}


def _time(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


def volume_encryption_view(
    encryption_key_id: str | None, type_row: dict[str, Any] | None
) -> dict[str, Any]:
    """``GET /volumes/{id}/encryption`` (Cinder's ``volume_encryption_metadata_get``): the
    volume's key id, and its type's ``control_location``, ``cipher``, ``key_size`` and
    ``provider`` when the type has encryption."""
    values: dict[str, Any] = {"encryption_key_id": encryption_key_id}
    encryption = (type_row or {}).get("encryption")
    if encryption:
        values |= {key: encryption[key] for key in ENCRYPTION_FIELDS}
    return values
