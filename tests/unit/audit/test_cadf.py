"""CADF action and reason code as keystonemiddleware would give them for a request."""

from __future__ import annotations

import pytest

from cinderblock.audit.cadf import cadf_action, cadf_time, success_status

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
