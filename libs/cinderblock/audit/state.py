"""A volume as it was at a version or a time, rebuilt from its events, as the row the read
model would hold for it then: the API's view code (``cinderblock.wire.views``) renders it,
so ``cinderblock state`` shows what ``GET /volumes/{id}`` showed.

The row's ``updated_at`` is, as in the read model, the time of the last event whose
projection updates the ``volumes`` row (events that only touch other tables leave it).
Columns no event sets yet (``consistencygroup_id``, ``group_id``, ``provider_id``,
``replication_status``, ``shared_targets``, ``service_uuid``, ``cluster_name``) are their
read-model defaults; fields the aggregate does not carry (yet) are read with a default.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cinderblock.audit.log import LoggedEvent
from cinderblock.readmodels.projections import PROJECTIONS


def touches_volume_row(name: str) -> bool:
    """True when the projection of event ``name`` updates the ``volumes`` row."""
    return any(p.sql.lstrip().startswith("UPDATE volumes") for p in PROJECTIONS.get(name, ()))


def rebuild(
    events: Sequence[LoggedEvent], *, version: int | None = None, at: datetime | None = None
) -> tuple[Any, datetime | None]:
    """The aggregate after the events up to ``version`` / recorded at or before ``at``
    (None if none), and its row's ``updated_at``."""
    aggregate: Any = None
    updated_at: datetime | None = None
    for logged in sorted(events, key=lambda e: e.version):
        if version is not None and logged.version > version:
            break
        if at is not None and logged.timestamp > at:
            break
        aggregate = logged.event.mutate(aggregate)
        if logged.version > 1 and touches_volume_row(logged.name):
            updated_at = logged.timestamp
    return aggregate, updated_at


def _value(status: Any) -> Any:
    return getattr(status, "value", status)


def _attachment_rows(volume: Any) -> list[dict[str, Any]]:
    rows = []
    for attachment_id, item in volume.attachments.items():
        attach_time = item.get("attach_time")
        rows.append(
            {
                "attachment_id": attachment_id,
                "volume_id": str(volume.id),
                "instance_uuid": item.get("instance_uuid"),
                "attached_host": item.get("attached_host"),
                "mountpoint": item.get("mountpoint"),
                "attach_status": item.get("attach_status"),
                "attach_mode": item.get("attach_mode"),
                "attach_time": datetime.fromisoformat(attach_time) if attach_time else None,
            }
        )
    # The read model's order: attach time (unset last), then id.
    rows.sort(key=lambda r: (r["attach_time"] is None, r["attach_time"] or 0, r["attachment_id"]))
    return rows


def volume_row(volume: Any, updated_at: datetime | None) -> dict[str, Any]:
    """The read-model row (as ``queries.get_volume`` returns it) of an aggregate."""
    return {
        "id": str(volume.id),
        "project_id": volume.project_id,
        "user_id": volume.user_id,
        "name": volume.name,
        "description": volume.description,
        "size": volume.size_gb,
        "status": _value(volume.status),
        "attach_status": _value(volume.attach_status),
        "migration_status": volume.migration_status,
        "host": volume.host,
        "availability_zone": volume.availability_zone,
        "volume_type_id": volume.volume_type_id,
        "volume_type_name": volume.volume_type_name,
        "bootable": volume.bootable,
        "multiattach": volume.multiattach,
        "encryption_key_id": getattr(volume, "encryption_key_id", None),
        "metadata": dict(volume.metadata),
        "admin_metadata": dict(volume.admin_metadata),
        "image_metadata": dict(volume.image_metadata),
        "snapshot_id": getattr(volume, "snapshot_id", None),
        "source_volid": getattr(volume, "source_volid", None),
        "consistencygroup_id": None,
        "group_id": None,
        "provider_id": None,
        "replication_status": None,
        "use_quota": True,
        "shared_targets": None,
        "service_uuid": None,
        "cluster_name": None,
        "created_at": volume.created_on,
        "updated_at": updated_at,
        "version": volume.version,
        "attachments": _attachment_rows(volume),
    }
