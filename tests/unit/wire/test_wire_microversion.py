"""Microversion negotiation: spec §1.3."""

from __future__ import annotations

import pytest

from cinderblock.wire.faults import BadRequest, NotAcceptable
from cinderblock.wire.microversion import (
    MAX_VERSION,
    MIN_VERSION,
    APIVersion,
    MicroversionError,
    negotiate,
    response_headers,
)


def test_bounds() -> None:
    assert APIVersion(3, 0) == MIN_VERSION
    assert APIVersion(3, 71) == MAX_VERSION


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3.0", APIVersion(3, 0)), ("3.42", APIVersion(3, 42)), ("10.10", APIVersion(10, 10))],
)
def test_parse_valid(text: str, expected: APIVersion) -> None:
    assert APIVersion.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text", ["3.05", "3", "3.0.1", "LATEST", "03.1", "0.1", "", " 3.1", "3.1 "]
)
def test_parse_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="invalid format"):
        APIVersion.parse(text)


def test_ordering_and_matches() -> None:
    assert APIVersion(3, 9) < APIVersion(3, 10) < APIVersion(4, 0)
    assert APIVersion(3, 42).matches("3.42")
    assert APIVersion(3, 43).matches(APIVersion(3, 42))
    assert not APIVersion(3, 41).matches("3.42")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, APIVersion(3, 0)),
        ({"OpenStack-API-Version": "volume 3.42"}, APIVersion(3, 42)),
        ({"openstack-api-version": "volume 3.42"}, APIVersion(3, 42)),
        ({"OPENSTACK-API-VERSION": "volume 3.0"}, APIVersion(3, 0)),
        ({"OpenStack-API-Version": "volume latest"}, MAX_VERSION),
        ({"OpenStack-API-Version": "volume 3.71"}, MAX_VERSION),
        ({"OpenStack-API-Version": "compute 2.1, volume 3.5"}, APIVersion(3, 5)),
        ({"OpenStack-API-Version": "volume 3.5, volume 3.7"}, APIVersion(3, 5)),
        ({"OpenStack-API-Version": "  volume   3.44  "}, APIVersion(3, 44)),
        ({"X-OpenStack-Volume-API-Version": "3.42"}, APIVersion(3, 42)),
        ({"x-openstack-volume-api-version": "volume 3.27"}, APIVersion(3, 27)),
        (
            {"OpenStack-API-Version": "volume 3.40", "X-OpenStack-Volume-API-Version": "3.1"},
            APIVersion(3, 40),
        ),
        ({"Content-Type": "application/json"}, APIVersion(3, 0)),
    ],
)
def test_negotiate(headers: dict[str, str], expected: APIVersion) -> None:
    assert negotiate(headers) == expected


@pytest.mark.parametrize(
    "value",
    ["compute 2.1", "", "identity 3.0, compute 2.1"],
)
def test_no_volume_element_is_400(value: str) -> None:
    with pytest.raises(MicroversionError) as info:
        negotiate({"OpenStack-API-Version": value})
    assert info.value.status == 400
    assert info.value.echo is None


@pytest.mark.parametrize("value", ["volume", "volume 3.1 extra", "compute 2.1, volume"])
def test_wrong_token_count_is_400_not_500(value: str) -> None:
    with pytest.raises(MicroversionError) as info:
        negotiate({"OpenStack-API-Version": value})
    assert info.value.status == 400
    assert info.value.echo is None


@pytest.mark.parametrize("token", ["3.05", "3", "3.0.1", "LATEST", "Latest", "v3.1", "3.x"])
def test_malformed_version_is_400(token: str) -> None:
    with pytest.raises(MicroversionError) as info:
        negotiate({"OpenStack-API-Version": f"volume {token}"})
    assert info.value.status == 400
    assert info.value.echo is None
    assert info.value.message == (
        f"API Version String {token} is of invalid format. Must be of format MajorNum.MinorNum."
    )


@pytest.mark.parametrize(
    ("token", "echo"),
    [
        ("3.72", APIVersion(3, 72)),
        ("4.0", APIVersion(4, 0)),
        ("2.0", None),
        ("1.0", None),
        ("2.5", APIVersion(2, 5)),
        ("11.0", None),
    ],
)
def test_out_of_range_is_406(token: str, echo: APIVersion | None) -> None:
    with pytest.raises(MicroversionError) as info:
        negotiate({"OpenStack-API-Version": f"volume {token}"})
    assert info.value.status == 406
    assert info.value.echo == echo
    assert info.value.message == (
        f"Version {token} is not supported by the API. Minimum is 3.0 and maximum is 3.71."
    )


def test_legacy_header_is_validated_too() -> None:
    with pytest.raises(MicroversionError) as info:
        negotiate({"X-OpenStack-Volume-API-Version": "3.99"})
    assert info.value.status == 406


def test_error_to_fault_406_echoes_version() -> None:
    with pytest.raises(MicroversionError) as info:
        negotiate({"OpenStack-API-Version": "volume 4.0"})
    fault = info.value.to_fault()
    assert isinstance(fault, NotAcceptable)
    assert fault.body() == {"computeFault": {"code": 406, "message": info.value.message}}
    assert fault.headers == {"OpenStack-API-Version": "volume 4.0", "Vary": "OpenStack-API-Version"}


def test_error_to_fault_without_echo_has_no_version_headers() -> None:
    with pytest.raises(MicroversionError) as info:
        negotiate({"OpenStack-API-Version": "volume 2.0"})
    assert info.value.to_fault().headers == {}
    with pytest.raises(MicroversionError) as bad:
        negotiate({"OpenStack-API-Version": "volume 3.05"})
    fault = bad.value.to_fault()
    assert isinstance(fault, BadRequest)
    assert fault.headers == {}


def test_response_headers() -> None:
    assert response_headers(APIVersion(3, 42)) == {
        "OpenStack-API-Version": "volume 3.42",
        "Vary": "OpenStack-API-Version",
    }
