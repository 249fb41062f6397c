"""Action bodies: spec §1.4 (splitting), §3.1 (os-extend), §3.15 (os-set_bootable)."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import ClassVar

import pytest

from cinderblock.wire.actions import (
    ACTION_MODELS,
    ActionBody,
    ExtendAction,
    SetBootableAction,
    no_such_action,
    parse_action,
    split_action_body,
)
from cinderblock.wire.faults import BadMediaType, BadRequest
from cinderblock.wire.microversion import MAX_VERSION, MIN_VERSION, APIVersion
from cinderblock.wire.schema import Boolean
from tests.helpers.apiref import SAMPLES, require_samples

V30 = MIN_VERSION
HINT = "Verify the request body and Content-Type header and try again."


# --- split_action_body --------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/vnd.openstack.volume+json",
        "application/vnd.openstack.volume+json;version=3",
    ],
)
def test_split_accepts_json_media_types(content_type: str) -> None:
    assert split_action_body(b'{"os-extend": {"new_size": 3}}', content_type) == (
        "os-extend",
        {"new_size": 3},
    )


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "", "json"])
def test_split_rejects_other_media_types(content_type: str) -> None:
    with pytest.raises(BadMediaType) as info:
        split_action_body(b'{"os-extend": {"new_size": 3}}', content_type)
    assert info.value.status == 415
    assert info.value.body() == {
        "badMediaType": {"code": 415, "message": "Unsupported Content-Type"}
    }


def test_split_media_type_checked_before_empty_body() -> None:
    with pytest.raises(BadMediaType):
        split_action_body(b"", "text/plain")


def test_split_body_without_content_type_is_415() -> None:
    with pytest.raises(BadMediaType):
        split_action_body(b'{"os-reserve": null}', None)


@pytest.mark.parametrize("content_type", [None, "application/json"])
def test_split_empty_body_is_400_action_none(content_type: str | None) -> None:
    with pytest.raises(BadRequest) as info:
        split_action_body(b"", content_type)
    assert info.value.message == f"There is no such action: None. {HINT}"


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"not json",
        b"   ",
        b"{}",
        b'{"os-extend": {"new_size": 3}, "os-reserve": null}',
        b"[1]",
        b"[]",
        b'"x"',
        b"5",
        b"true",
        b"null",
        b"\xff\xfe\x00",
        b"[" * 100000,
    ],
)
def test_split_malformed_is_400(raw: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        split_action_body(raw, "application/json")
    assert info.value.message == "Malformed request body"
    assert info.value.body() == {"badRequest": {"code": 400, "message": "Malformed request body"}}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"os-reserve": null}', ("os-reserve", None)),
        (b'{"os-force_delete": ""}', ("os-force_delete", "")),
        (b'{"os-unmanage": {}}', ("os-unmanage", {})),
        (b'{"bogus": [1, 2]}', ("bogus", [1, 2])),
    ],
)
def test_split_returns_key_and_any_payload(raw: bytes, expected: tuple[str, object]) -> None:
    assert split_action_body(raw, "application/json") == expected


def test_no_such_action() -> None:
    fault = no_such_action("os-bogus")
    assert fault.status == 400
    assert fault.message.startswith("There is no such action: os-bogus")
    assert HINT in fault.message


# --- os-extend ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "size"),
    [({"new_size": 3}, 3), ({"new_size": "20"}, 20), ({"new_size": 2147483647}, 2147483647)],
)
def test_extend_ok(payload: object, size: int) -> None:
    assert ExtendAction.parse(payload, V30).new_size == size


@pytest.mark.parametrize(
    "payload",
    [
        {"new_size": "abc"},
        {"new_size": None},
        {"new_size": 0},
        {"new_size": "0"},
        {"new_size": -5},
        {"new_size": 1.5},
        {"new_size": 2.0},
        {"new_size": True},
        {"new_size": 2147483648},
        {"new_size": [3]},
        {},
        {"new_size": 3, "extra": 1},
        {"size": 3},
        None,
        [],
        "3",
        3,
    ],
)
def test_extend_rejects(payload: object) -> None:
    with pytest.raises(BadRequest) as info:
        ExtendAction.parse(payload, MAX_VERSION)
    assert info.value.status == 400
    assert info.value.message.startswith("Invalid input for field/attribute ")


def test_extend_messages() -> None:
    cases = {
        "abc": "Invalid input for field/attribute new_size. Value: abc. "
        "'abc' does not match '^[0-9]+$'",
        None: "Invalid input for field/attribute new_size. Value: None. "
        "None is not of type 'integer', 'string'",
        0: "Invalid input for field/attribute new_size. Value: 0. 0 is less than the minimum of 1",
    }
    for value, message in cases.items():
        with pytest.raises(BadRequest) as info:
            ExtendAction.parse({"new_size": value}, V30)
        assert info.value.message == message
    with pytest.raises(BadRequest) as missing:
        ExtendAction.parse({}, V30)
    assert missing.value.message == (
        "Invalid input for field/attribute os-extend. Value: {}. 'new_size' is a required property"
    )
    with pytest.raises(BadRequest) as extra:
        ExtendAction.parse({"new_size": 2, "foo": 1}, V30)
    assert extra.value.message.endswith(
        "Additional properties are not allowed ('foo' was unexpected)"
    )
    with pytest.raises(BadRequest) as null:
        ExtendAction.parse(None, V30)
    assert null.value.message == (
        "Invalid input for field/attribute os-extend. Value: None. None is not of type 'object'"
    )


def test_extend_sample() -> None:
    require_samples()
    raw = (SAMPLES / "volume-extend-request.json").read_bytes()
    key, payload = split_action_body(raw, "application/json")
    assert key == "os-extend"
    assert ExtendAction.parse(payload, V30).new_size == 3


# --- os-set_bootable ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("True", True), ("no", False), ("1", True), ("f", False)],
)
def test_set_bootable_ok(value: object, expected: bool) -> None:
    assert SetBootableAction.parse({"bootable": value}, V30).bootable is expected


@pytest.mark.parametrize(
    "payload",
    [
        {"bootable": "tt"},
        {"bootable": 11},
        {"bootable": 1},
        {"bootable": None},
        {"bootable": " true "},
        {},
        {"bootable": True, "x": 1},
        None,
        "true",
    ],
)
def test_set_bootable_rejects(payload: object) -> None:
    with pytest.raises(BadRequest):
        SetBootableAction.parse(payload, V30)


def test_set_bootable_sample() -> None:
    require_samples()
    raw = (SAMPLES / "volume-bootable-status-update-request.json").read_bytes()
    key, payload = split_action_body(raw, "application/json")
    assert parse_action(key, payload, V30) == SetBootableAction(bootable=True)


# --- table --------------------------------------------------------------------------


def test_action_table() -> None:
    assert ACTION_MODELS["os-extend"] is ExtendAction
    assert ACTION_MODELS["os-set_bootable"] is SetBootableAction
    assert parse_action("os-extend", {"new_size": "5"}, V30) == ExtendAction(new_size=5)
    with pytest.raises(BadRequest, match="There is no such action: os-nope"):
        parse_action("os-nope", {}, V30)


def test_models_are_frozen() -> None:
    action = ExtendAction.parse({"new_size": 3}, V30)
    with pytest.raises(ValueError, match="frozen"):
        action.new_size = 4


class _Gated(ActionBody):
    ACTION: ClassVar[str] = "os-gated"
    SINCE = MappingProxyType({"protected": APIVersion(3, 1)})

    protected: Boolean = False


def test_keys_newer_than_the_request_are_unexpected() -> None:
    with pytest.raises(BadRequest) as info:
        _Gated.parse({"protected": True}, V30)
    assert info.value.message.endswith("('protected' was unexpected)")
    assert _Gated.parse({"protected": True}, APIVersion(3, 1)).protected is True
    assert _Gated.parse({}, V30).protected is False


def test_sample_body_round_trip_through_json() -> None:
    body = json.dumps({"os-extend": {"new_size": "7"}}).encode()
    key, payload = split_action_body(body, "application/json")
    assert ACTION_MODELS[key].parse(payload, V30) == ExtendAction(new_size=7)
