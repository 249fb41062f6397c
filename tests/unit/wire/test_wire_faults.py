"""Fault bodies: spec §1.6."""

from __future__ import annotations

import pytest

from cinderblock.wire import faults
from cinderblock.wire.faults import (
    BadMediaType,
    BadMethod,
    BadRequest,
    Conflict,
    Fault,
    Forbidden,
    NotAcceptable,
    NotFound,
    NotImplementedFault,
    OverLimit,
    Unauthorized,
    fault_name,
)


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "badRequest"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "itemNotFound"),
        (405, "badMethod"),
        (409, "conflictingRequest"),
        (413, "overLimit"),
        (415, "badMediaType"),
        (501, "notImplemented"),
        (503, "serviceUnavailable"),
        (406, "computeFault"),
        (500, "computeFault"),
        (418, "computeFault"),
    ],
)
def test_fault_names(status: int, name: str) -> None:
    assert fault_name(status) == name


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (BadRequest, 400),
        (Unauthorized, 401),
        (Forbidden, 403),
        (NotFound, 404),
        (BadMethod, 405),
        (NotAcceptable, 406),
        (Conflict, 409),
        (BadMediaType, 415),
        (NotImplementedFault, 501),
    ],
)
def test_fixed_status_subclasses(cls: type[BadRequest], status: int) -> None:
    fault = cls("boom")
    assert isinstance(fault, Fault)
    assert fault.status == status
    assert fault.message == "boom"
    assert str(fault) == "boom"
    assert fault.body() == {fault_name(status): {"code": status, "message": "boom"}}
    assert fault.headers == {}


def test_default_message() -> None:
    assert NotFound().message == "The resource could not be found."
    assert BadRequest().message


def test_generic_fault() -> None:
    fault = Fault(500, "kaput", {"X-Foo": "1"})
    assert fault.body() == {"computeFault": {"code": 500, "message": "kaput"}}
    assert fault.headers == {"X-Foo": "1"}


def test_over_limit() -> None:
    fault = OverLimit("VolumeSizeExceedsLimit", "Requested volume size 20G is larger.")
    assert fault.status == 413
    assert fault.body() == {
        "overLimit": {
            "code": 413,
            "message": "VolumeSizeExceedsLimit: Requested volume size 20G is larger.",
            "retryAfter": "0",
        }
    }
    assert fault.headers == {"Retry-After": "0"}


def test_generic_413_also_gets_retry_after() -> None:
    fault = Fault(413, "too big")
    assert fault.headers["Retry-After"] == "0"
    assert fault.body()["overLimit"]["retryAfter"] == "0"


def test_helpers() -> None:
    assert faults.volume_not_found("xxx").message == "Volume xxx could not be found."
    assert faults.volume_not_found("xxx").status == 404
    forbidden = faults.policy_forbidden("volume:extend")
    assert (forbidden.status, forbidden.message) == (
        403,
        "Policy doesn't allow volume:extend to be performed.",
    )
    assert faults.invalid_input("bad").message == "Invalid input received: bad"
    assert faults.invalid_input("bad").status == 400
    assert faults.invalid_volume("nope").message == "Invalid volume: nope"
    assert faults.resource_not_found().body() == {
        "itemNotFound": {"code": 404, "message": "The resource could not be found."}
    }


def test_faults_are_raisable() -> None:
    with pytest.raises(Fault) as info:
        raise faults.volume_not_found("v1")
    assert info.value.status == 404
