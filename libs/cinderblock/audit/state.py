"""A volume as it was at a version or a time, rebuilt from its events, as the row the read
model would hold for it then: the API's view code (``cinderblock.wire.views``) renders it,
so ``cinderblock state`` shows what ``GET /volumes/{id}`` showed. The API answers a command
from the same rows while the read model is behind (the log is the truth): volumes, their
attachments, snapshots and volume types.

The row's ``updated_at`` is, as in the read model, the time of the last event whose
projection updates the ``volumes`` row (events that only touch other tables leave it).
Columns no event sets yet (``consistencygroup_id``, ``group_id``, ``provider_id``,
``replication_status``, ``cluster_name``) are their read-model defaults (``shared_targets``
and ``service_uuid`` follow from the host in the view); fields the aggregate does not carry
(yet) are read with a default.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cinderblock.audit.log import LoggedEvent
from cinderblock.readmodels.projections import PROJECTIONS


def touches_row(name: str, table: str = "volumes") -> bool:
    """True when the projection of event ``name`` updates its aggregate's row in ``table``."""
    return any(p.sql.split()[:2] == ["UPDATE", table] for p in PROJECTIONS.get(name, ()))


def touches_volume_row(name: str) -> bool:
    """True when the projection of event ``name`` updates the ``volumes`` row."""
    return touches_row(name, "volumes")


def rebuild(
    events: Sequence[LoggedEvent],
    *,
    version: int | None = None,
    at: datetime | None = None,
    table: str = "volumes",
) -> tuple[Any, datetime | None]:
    """The aggregate after the events up to ``version`` / recorded at or before ``at``
    (None if none), and the ``updated_at`` of its row in ``table``."""
    aggregate: Any = None
    updated_at: datetime | None = None
    for logged in sorted(events, key=lambda e: e.version):
        if version is not None and logged.version > version:
            break
        if at is not None and logged.timestamp > at:
            break
        aggregate = logged.event.mutate(aggregate)
        if logged.version > 1 and touches_row(logged.name, table):
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
        "snapshot_id": getattr(volume, "source_snapshot_id", None),
        "source_volid": getattr(volume, "source_volid", None),
        "consistencygroup_id": None,
        "group_id": None,
        "provider_id": None,
        "replication_status": None,
        "use_quota": True,
        "cluster_name": None,
        "created_at": volume.created_on,
        "updated_at": updated_at,
        "version": volume.version,
        "attachments": _attachment_rows(volume),
    }


def attachment_rows(volume: Any) -> list[dict[str, Any]]:
    """The volume's live attachments as ``queries.get_attachment`` returns each (the
    attachments API's row: connection info, no detach time while live, the volume's project)."""
    return [
        {
            "id": row["attachment_id"],
            **{k: v for k, v in row.items() if k != "attachment_id"},
            "connection_info": volume.attachments[row["attachment_id"]].get("connection_info")
            or {},
            "detach_time": None,
            "project_id": volume.project_id,
        }
        for row in _attachment_rows(volume)
    ]


def snapshot_row(events: Sequence[LoggedEvent]) -> dict[str, Any] | None:
    """The read-model row (as ``queries.get_snapshot`` returns it) of a snapshot's events;
    None without events. ``progress`` is 0% until the create completed, then 100%."""
    snapshot, updated_at = rebuild(events, table="snapshots")
    if snapshot is None:
        return None
    completed = any(e.name == "Snapshot.CreateCompleted" for e in events)
    return {
        "id": str(snapshot.id),
        "volume_id": snapshot.volume_id,
        "project_id": snapshot.project_id,
        "user_id": snapshot.user_id,
        "name": snapshot.name,
        "description": snapshot.description,
        "size": snapshot.volume_size,
        "status": snapshot.status,
        "progress": "100%" if completed else "0%",
        "metadata": dict(snapshot.metadata),
        "created_at": snapshot.created_on,
        "updated_at": updated_at,
    }


def type_row(events: Sequence[LoggedEvent]) -> dict[str, Any] | None:
    """The read-model row (as ``queries.get_type`` returns it) of a volume type's events;
    None without events. The encryption's times are those of its create and last update."""
    vtype, _ = rebuild(events, table="volume_types")
    if vtype is None:
        return None
    created: datetime | None = None
    updated: datetime | None = None
    for logged in sorted(events, key=lambda e: e.version):
        if logged.name == "VolumeType.EncryptionCreated":
            created, updated = logged.timestamp, None
        elif logged.name == "VolumeType.EncryptionUpdated":
            updated = logged.timestamp
        elif logged.name == "VolumeType.EncryptionDeleted":
            created = updated = None
    encryption = getattr(vtype, "encryption", None)
    return {
        "id": str(vtype.id),
        "name": vtype.name,
        "description": vtype.description,
        "is_public": vtype.is_public,
        "extra_specs": dict(vtype.extra_specs),
        "projects": list(vtype.projects),
        "encryption": dict(encryption) if encryption is not None else None,
        "encryption_created_at": created,
        "encryption_updated_at": updated,
    }
