"""The limits API on the wire (``GET /limits``): Cinder's absolute limits from a project's
quota limits, the used-limits extension's usage beside them, and no rate limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cinderblock.wire.microversion import APIVersion

# From 3.39 an admin may ask for another project's limits (?project_id=, or the older
# ?tenant_id=); before, and for everyone else, the parameters are ignored.
ADMIN_FILTER_VERSION = APIVersion(3, 39)

# cinder/api/views/limits.py and cinder/api/contrib/used_limits.py
LIMIT_NAMES: Mapping[str, str] = {
    "gigabytes": "maxTotalVolumeGigabytes",
    "backup_gigabytes": "maxTotalBackupGigabytes",
    "volumes": "maxTotalVolumes",
    "snapshots": "maxTotalSnapshots",
    "backups": "maxTotalBackups",
}
USED_NAMES: Mapping[str, str] = {
    "volumes": "totalVolumesUsed",
    "gigabytes": "totalGigabytesUsed",
    "snapshots": "totalSnapshotsUsed",
    "backups": "totalBackupsUsed",
    "backup_gigabytes": "totalBackupGigabytesUsed",
}


def target_project(
    query: Mapping[str, str], caller_project: str, *, is_admin: bool, version: APIVersion
) -> str:
    """Whose limits: the caller's, or an admin's ``project_id``/``tenant_id`` from 3.39."""
    if is_admin and version.matches(ADMIN_FILTER_VERSION):
        return query.get("project_id", query.get("tenant_id", caller_project))
    return caller_project


def limits_view(limits: Mapping[str, int], in_use: Mapping[str, int] | None) -> dict[str, Any]:
    """The body of ``GET /limits``.

    Args:
        limits: the project's limit per quota resource (``-1`` unlimited).
        in_use: its usage per resource, or None when the caller may not see used limits
            (``limits_extension:used_limits``).
    """
    absolute: dict[str, int] = {
        name: int(limits[resource]) for resource, name in LIMIT_NAMES.items() if resource in limits
    }
    if in_use is not None:
        absolute |= {name: int(in_use.get(resource, 0)) for resource, name in USED_NAMES.items()}
    return {"limits": {"rate": [], "absolute": absolute}}
