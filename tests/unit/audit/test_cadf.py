"""CADF action and reason code as keystonemiddleware would give them for a request."""

from __future__ import annotations

import pytest

from cinderblock.audit.cadf import (
    RequestFacts,
    cadf_action,
    cadf_time,
    record,
    records,
    success_status,
)

pytestmark = pytest.mark.unit

VOL = "/v3/p1/volumes/9b1f0c9e-7f5e-4a0e-8a59-1c2f4e6f7a80"


@pytest.mark.parametrize(
    ("action", "method", "path", "expected", "status"),
    [
        ("os-extend", "POST", f"{VOL}/action", "update/os-extend", 202),
        ("os-set_bootable", "POST", f"{VOL}/action", "update/os-set_bootable", 200),
        ("revert", "POST", f"{VOL}/action", "update/revert", 202),
        ("attachment:complete", "POST", "/v3/p1/attachments/a/action", "update/os-complete", 204),
        ("volume:create", "POST", "/v3/p1/volumes", "create", 202),
        ("volume:update", "PUT", VOL, "update", 200),
        ("volume:delete", "DELETE", VOL, "delete", 202),
        ("volume:create_volume_metadata", "POST", f"{VOL}/metadata", "create", 200),
        ("volume:delete_volume_metadata", "DELETE", f"{VOL}/metadata/k", "delete", 200),
        ("attachment:create", "POST", "/v3/p1/attachments", "create", 200),
        ("type:extra_specs", "POST", "/v3/p1/types/t/extra_specs", "create", 200),
        ("type:extra_specs", "DELETE", "/v3/p1/types/t/extra_specs/k", "delete", 202),
    ],
)
def test_action_and_status_of_a_request(
    action: str, method: str, path: str, expected: str, status: int
) -> None:
    meta = {"action": action, "http_method": method, "request_path": path}
    assert cadf_action(meta) == expected
    assert success_status(meta) == status


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("os-extend", "update/os-extend"),
        ("revert", "update/revert"),
        ("volume:create", "create"),
        ("snapshot:delete", "delete"),
        ("volume:create_volume_metadata", "create"),
        ("volume:update", "update"),
    ],
)
def test_events_recorded_before_the_method_was_stored(action: str, expected: str) -> None:
    assert cadf_action({"action": action}) == expected


def test_time_is_pycadf_format() -> None:
    from datetime import datetime, timedelta, timezone

    when = datetime(2026, 8, 22, 12, 15, 30, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert cadf_time(when) == "2026-08-22T10:15:30.123456+0000"


VOLUME_ROUTE = "/v3/{project_id}/volumes/{volume_id}"


def _facts(**fields: object) -> RequestFacts:
    from datetime import UTC, datetime

    base: dict[str, object] = {
        "request_id": "req-1",
        "at": datetime(2026, 12, 6, 12, 0, tzinfo=UTC),
        "status": 200,
        "method": "GET",
        "path": f"{VOL}?x=1",
        "route": VOLUME_ROUTE,
        "user_id": "alice",
        "project_id": "p1",
        "roles": ["reader"],
        "is_admin": False,
        "remote_addr": "127.0.0.1",
        "microversion": "3.0",
        "target_id": VOL.rpartition("/")[2],
        "duration_ms": 2.5,
    }
    return RequestFacts(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "route", "expected"),
    [
        ("GET", VOLUME_ROUTE, "read"),
        ("GET", "/v3/{project_id}/volumes", "list"),
        ("GET", "/v3/{project_id}/volumes/detail", "list"),
        ("HEAD", "/healthcheck", "read"),
        ("POST", f"{VOLUME_ROUTE}/action", "create"),  # no body key: keystonemiddleware's
        ("OPTIONS", VOLUME_ROUTE, "unknown"),
    ],
)
def test_action_of_reads_and_refusals(method: str, route: str, expected: str) -> None:
    meta = {"http_method": method, "request_path": route, "route": route}
    assert cadf_action(meta) == expected


def test_a_read_is_a_success_with_its_status_and_the_volume_as_target() -> None:
    found = record(_facts())
    assert (found["action"], found["outcome"], found["reason"]) == (
        "read",
        "success",
        {"reasonType": "HTTP", "reasonCode": "200"},
    )
    assert found["target"] == {
        "typeURI": "service/storage/block/volumes/volume",
        "id": VOL.rpartition("/")[2],
    }
    assert found["requestPath"] == f"{VOL}?x=1"
    assert found["initiator"]["roles"] == ["reader"]
    assert found["reporterchain"][0]["reporterTime"] == "2026-12-06T12:00:00.002500+0000"
    assert [a["name"] for a in found["attachments"]] == ["microversion"]


@pytest.mark.parametrize("status", [400, 403, 404, 409, 413])
def test_a_refusal_is_a_failure_with_its_status_and_fault(status: int) -> None:
    found = record(
        _facts(status=status, method="POST", route=f"{VOLUME_ROUTE}/action", action="os-extend")
    )
    assert (found["action"], found["outcome"], found["reason"]["reasonCode"]) == (
        "update/os-extend",
        "failure",
        str(status),
    )
    assert found["target"]["typeURI"] == "service/storage/block/volumes/volume"


def test_an_unmatched_path_and_an_unknown_caller() -> None:
    found = record(
        _facts(status=404, route=None, target_id=None, user_id=None, project_id=None, fault="x")
    )
    assert found["target"] == {"typeURI": "service/storage/block", "id": "unknown"}
    assert (found["initiator"]["id"], found["initiator"]["project_id"]) == ("unknown", "unknown")
    assert {"typeURI": "mime:application/json", "name": "fault", "content": "x"} in found[
        "attachments"
    ]


def test_facts_survive_their_stored_form() -> None:
    facts = _facts(fault="Policy doesn't allow volume:extend to be performed.", status=403)
    assert RequestFacts.from_json(facts.to_json()) == facts


def test_the_request_log_wins_over_meta_and_old_requests_still_come_from_meta() -> None:
    """A request in the request log is recorded with its real status and route; one with
    events only (written before the log existed) as before, from its events' meta."""
    from datetime import timedelta
    from uuid import uuid4

    from cinderblock.audit.log import LoggedEvent

    def logged(request_id: str, at_offset: float) -> LoggedEvent:
        facts = _facts()
        meta = {
            "request_id": request_id,
            "user_id": "alice",
            "project_id": "p1",
            "action": "os-extend",
            "http_method": "POST",
            "request_path": f"{VOL}/action",
        }
        return LoggedEvent(
            position=1,
            aggregate_id=uuid4(),
            version=3,
            name="Volume.ExtendRequested",
            event=None,
            meta=meta,
            recorded_at=facts.at + timedelta(seconds=at_offset),
        )

    answered = _facts(
        request_id="req-new", status=202, method="POST", route=f"{VOLUME_ROUTE}/action"
    )
    read = _facts(request_id="req-read", at=answered.at + timedelta(seconds=5))
    found = records([logged("req-old", -10), logged("req-new", 0.1)], requests=[answered, read])
    assert [(r["initiator"]["request_id"], r["action"]) for r in found] == [
        ("req-old", "update/os-extend"),
        ("req-new", "update/os-extend"),  # the body key from meta: the log had none
        ("req-read", "read"),
    ]
    assert [r["reason"]["reasonCode"] for r in found] == ["202", "202", "200"]
    assert [len(r.get("reporterchain", [])) for r in found] == [0, 1, 1]
    assert records([], project_id="other", requests=[answered, read]) == []
