"""Cinder JSON-schema semantics: spec §1.8."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from cinderblock.wire.schema import (
    Boolean,
    Description,
    Metadata,
    OptionalMetadata,
    OptionalName,
    OptionalUuid,
    SchemaError,
    VolumeSize,
    is_uuid_like,
    optional_string,
    parse_boolean,
    parse_description,
    parse_metadata,
    parse_uuid,
    parse_volume_size,
    validate_object,
    validation_message,
)

TRUE = ["True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t"]
FALSE = ["False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f"]


@pytest.mark.parametrize("value", [True, *TRUE])
def test_boolean_true(value: object) -> None:
    assert parse_boolean(value) is True


@pytest.mark.parametrize("value", [False, *FALSE])
def test_boolean_false(value: object) -> None:
    assert parse_boolean(value) is False


@pytest.mark.parametrize(
    "value", [0, 1, 11, None, " true ", "tt", "", "Y", "T", "tRUE", "oN", 1.0, [], {}]
)
def test_boolean_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"is not (one of|of type)"):
        parse_boolean(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), (2147483647, 2147483647), ("1", 1), ("42", 42), ("007", 7)],
)
def test_volume_size_ok(value: object, expected: int) -> None:
    assert parse_volume_size(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "0 is less than the minimum of 1"),
        (-1, "-1 is less than the minimum of 1"),
        ("0", "'0' is less than the minimum of 1"),
        (2147483648, "2147483648 is greater than the maximum of 2147483647"),
        ("2147483648", "'2147483648' is greater than the maximum of 2147483647"),
        ("9" * 5000, "is greater than the maximum of 2147483647"),
        ("abc", "'abc' does not match '^[0-9]+$'"),
        ("-1", "does not match"),
        ("1.5", "does not match"),
        (" 1", "does not match"),
        ("1\n", "does not match"),
        ("", "does not match"),
        (1.5, "1.5 is not of type 'integer', 'string'"),
        (1.0, "1.0 is not of type 'integer', 'string'"),
        (True, "True is not of type 'integer', 'string'"),
        (None, "None is not of type 'integer', 'string'"),
        ([1], "is not of type"),
    ],
)
def test_volume_size_rejects(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=r"\S") as info:
        parse_volume_size(value)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        "f7223234-1afc-4d19-bfa3-d19deb6235ef",
        "F7223234-1AFC-4D19-BFA3-D19DEB6235EF",
        "f72232341afc4d19bfa3d19deb6235ef",
        "{f7223234-1afc-4d19-bfa3-d19deb6235ef}",
        "urn:uuid:f7223234-1afc-4d19-bfa3-d19deb6235ef",
        "f722-3234-1afc-4d19-bfa3-d19deb6235ef",
    ],
)
def test_uuid_like(value: str) -> None:
    assert is_uuid_like(value)
    assert parse_uuid(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "xxx",
        "",
        "f7223234-1afc-4d19-bfa3-d19deb6235e",
        "f7223234-1afc-4d19-bfa3-d19deb6235eff",
        "g7223234-1afc-4d19-bfa3-d19deb6235ef",
        "URN:UUID:f7223234-1afc-4d19-bfa3-d19deb6235ef",
        "+7223234-1afc-4d19-bfa3-d19deb6235ef",
        123,
        None,
    ],
)
def test_not_uuid_like(value: object) -> None:
    assert not is_uuid_like(value)
    with pytest.raises(ValueError, match=r"uuid|not of type"):
        parse_uuid(value)


def test_description() -> None:
    assert parse_description("a normal description, with ünïcode") == (
        "a normal description, with ünïcode"
    )
    assert parse_description("x" * 255) == "x" * 255
    for bad in ["x" * 256, "tab\there", "nul\x00", "line\u2028sep", 5]:
        with pytest.raises(SchemaError):
            parse_description(bad)


def test_metadata() -> None:
    ok = {"a-b_c:d. e/f": "v", "K" * 255: "x" * 255}
    assert parse_metadata(ok) == ok
    for bad in [{"": "v"}, {"a$": "v"}, {"k" * 256: "v"}, {"é": "v"}]:
        with pytest.raises(SchemaError, match="does not match"):
            parse_metadata(bad)
    with pytest.raises(SchemaError) as info:
        parse_metadata({"k": 1})
    assert (
        str(info.value)
        == "Invalid input for field/attribute k. Value: 1. 1 is not of type 'string'"
    )
    with pytest.raises(SchemaError, match="too long"):
        parse_metadata({"k": "v" * 256})
    with pytest.raises(SchemaError, match="not of type 'object'"):
        parse_metadata(["k"])


class _Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: VolumeSize
    flag: Boolean = False
    name: OptionalName = None
    text: Description = ""
    meta: OptionalMetadata = None
    ref: OptionalUuid = None
    zone: Annotated[str | None, optional_string(255, min_length=1)] = None


def _message(data: object, root: str | None = None, root_value: object = None) -> str:
    with pytest.raises(ValidationError) as info:
        _Sample.model_validate(data)
    if root is None:
        return validation_message(info.value)
    return validation_message(info.value, root=root, root_value=root_value)


def test_pydantic_types_accept() -> None:
    sample = _Sample.model_validate(
        {"size": "3", "flag": "on", "name": "  padded  ", "meta": None, "ref": None, "zone": "z"}
    )
    assert (sample.size, sample.flag, sample.name, sample.meta, sample.zone) == (
        3,
        True,
        "padded",
        None,
        "z",
    )


def test_field_messages() -> None:
    assert _message({"size": 0}) == (
        "Invalid input for field/attribute size. Value: 0. 0 is less than the minimum of 1"
    )
    assert _message({"size": "abc"}) == (
        "Invalid input for field/attribute size. Value: abc. 'abc' does not match '^[0-9]+$'"
    )
    assert _message({"size": 1, "flag": "tt"}).startswith(
        "Invalid input for field/attribute flag. Value: tt. 'tt' is not one of [True, 'True'"
    )
    assert _message({"size": 1, "name": "x" * 256}).startswith(
        "Invalid input for field/attribute name. Value: xxx"
    )
    assert _message({"size": 1, "zone": ""}).endswith("'' is too short")
    assert _message({"size": 1, "ref": "nope"}).endswith("'nope' is not a 'uuid'")
    assert _message({"size": 1, "meta": {"k": 5}}) == (
        "Invalid input for field/attribute k. Value: 5. 5 is not of type 'string'"
    )


def test_top_level_messages() -> None:
    assert _message({}) == "'size' is a required property"
    assert _message({"size": 1, "foo": 1}) == (
        "Additional properties are not allowed ('foo' was unexpected)"
    )
    assert _message({"size": 1, "foo": 1, "bar": 2}) == (
        "Additional properties are not allowed ('foo', 'bar' were unexpected)"
    )
    assert _message({"foo": 1}) == "'size' is a required property"  # required before extras
    assert _message({"size": 0, "foo": 1}).startswith("Invalid input for field/attribute size.")


def test_top_level_messages_under_a_root() -> None:
    assert _message({}, root="os-extend", root_value={}) == (
        "Invalid input for field/attribute os-extend. Value: {}. 'size' is a required property"
    )


def test_validate_object() -> None:
    assert validate_object(_Sample, {"size": 2}).size == 2
    with pytest.raises(SchemaError) as info:
        validate_object(_Sample, None, field="thing")
    assert str(info.value) == (
        "Invalid input for field/attribute thing. Value: None. None is not of type 'object'"
    )
    with pytest.raises(SchemaError, match=r"\('flag' was unexpected\)"):
        validate_object(_Sample, {"size": 2, "flag": True}, hidden=["flag"])
    with pytest.raises(SchemaError, match=r"\('flag', 'x' were unexpected\)"):
        validate_object(_Sample, {"size": 2, "flag": True, "x": 1}, hidden=["flag"])
    with pytest.raises(SchemaError, match="'size' is a required property"):
        validate_object(_Sample, {"flag": True}, hidden=["flag"])
    loose = validate_object(
        _Sample, {"size": 2, "x": 1, "flag": "bad"}, hidden=["flag"], allow_unknown=True
    )
    assert (loose.size, loose.flag) == (2, False)


def test_metadata_type_is_not_nullable() -> None:
    class _Meta(BaseModel):
        meta: Metadata

    with pytest.raises(ValidationError) as info:
        _Meta.model_validate({"meta": None})
    assert validation_message(info.value).endswith("None is not of type 'object'")
