"""The limits view and whose limits a request asks for (Cinder's limits API)."""

from __future__ import annotations

from cinderblock.wire.limits import limits_view, target_project
from cinderblock.wire.microversion import APIVersion

LIMITS = {"volumes": 10, "gigabytes": 1000, "snapshots": -1, "backups": 10, "groups": 10}


def test_absolute_limits_use_cinders_names_and_rate_is_empty() -> None:
    body = limits_view(LIMITS, None)
    assert body == {
        "limits": {
            "rate": [],
            "absolute": {
                "maxTotalVolumes": 10,
                "maxTotalVolumeGigabytes": 1000,
                "maxTotalSnapshots": -1,
                "maxTotalBackups": 10,
            },
        }
    }


def test_used_limits_are_added_with_zero_for_what_was_never_used() -> None:
    absolute = limits_view(LIMITS, {"volumes": 2, "gigabytes": 3})["limits"]["absolute"]
    assert {k: v for k, v in absolute.items() if k.startswith("total")} == {
        "totalVolumesUsed": 2,
        "totalGigabytesUsed": 3,
        "totalSnapshotsUsed": 0,
        "totalBackupsUsed": 0,
        "totalBackupGigabytesUsed": 0,
    }


def test_only_admins_at_339_pick_the_project() -> None:
    query = {"project_id": "p2", "tenant_id": "p3"}
    at = APIVersion(3, 39)
    assert target_project(query, "p1", is_admin=True, version=at) == "p2"
    assert target_project({"tenant_id": "p3"}, "p1", is_admin=True, version=at) == "p3"
    assert target_project(query, "p1", is_admin=True, version=APIVersion(3, 38)) == "p1"
    assert target_project(query, "p1", is_admin=False, version=at) == "p1"
    assert target_project({}, "p1", is_admin=True, version=at) == "p1"
