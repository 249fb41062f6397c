"""Replay's projection steps for snapshots, volume types and quotas (see ``steps``)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from cinderblock.readmodels.event import ProjectionEvent
from cinderblock.readmodels.folds import (
    JSON_NULL,
    Row,
    Step,
    as_bool,
    as_text,
    const,
    fields,
    insert,
    jsonb,
    jsonb_add,
    update,
)
from cinderblock.readmodels.step_parts import (
    merge,
    status,
    text_changes,
    ts,
    version,
    without,
)

# ---------------------------------------------------------------- snapshots

S = "snapshots"


def _snapshot_created(row: Row, e: ProjectionEvent) -> None:
    d = e.data
    row.update(
        volume_id=UUID(d["volume_id"]),
        project_id=d["project_id"],
        user_id=d["user_id"],
        name=d["name"],
        description=d["description"],
        size=d["volume_size"],
        status="creating",
        progress="0%",
        metadata=jsonb(d["metadata"]),
        created_at=e.timestamp,
        version=e.version,
    )


def _snapshot_updated(row: Row, e: ProjectionEvent) -> None:
    text_changes("name", "description")(row, e)
    if "metadata" in e.data["changes"]:  # the metadata endpoints
        row["metadata"] = jsonb(e.data["changes"]["metadata"])


SNAPSHOT_STEPS: dict[str, tuple[Step, ...]] = {
    "Snapshot.Created": (insert(S, _snapshot_created),),
    "Snapshot.CreateCompleted": (update(S, const(status="available", progress="100%")),),
    "Snapshot.CreateFailed": (update(S, status("error")),),
    "Snapshot.Updated": (update(S, _snapshot_updated),),
    "Snapshot.DeleteRequested": (update(S, status("deleting")),),
    "Snapshot.Deleted": (update(S, const(status="deleted", deleted=True)),),
    "Snapshot.DeleteFailed": (update(S, status("error_deleting")),),
    "Snapshot.RestoreStarted": (update(S, status("restoring")),),
    "Snapshot.RestoreEnded": (update(S, status("available")),),
    "Snapshot.StatusReset": (update(S, fields(status="status")),),
}

# ------------------------------------------------------------- volume types

T = "volume_types"


def _type_created(row: Row, e: ProjectionEvent) -> None:
    d = e.data
    row.update(
        name=d["name"],
        description=d["description"],
        is_public=d["is_public"],
        extra_specs=jsonb(d["extra_specs"]),
        created_at=e.timestamp,
        version=e.version,
    )


def _type_updated(row: Row, e: ProjectionEvent) -> None:
    changes = e.data["changes"]
    name = as_text(changes.get("name"))
    if name is not None:
        row["name"] = name
    if "description" in changes:
        row["description"] = as_text(changes["description"])
    public = changes.get("is_public")
    if public is not None:
        row["is_public"] = as_bool(public)


def _projects(op: Any) -> Any:
    def change(row: Row, e: ProjectionEvent) -> None:
        current = row["projects"] if isinstance(row["projects"], list) else []
        row["projects"] = op(current, e.data["project_id"])

    return change


_ENCRYPTION_FIELDS = ("encryption_id", "provider", "cipher", "key_size", "control_location")


def _encryption_created(row: Row, e: ProjectionEvent) -> None:
    row["encryption"] = {f: e.data[f] for f in _ENCRYPTION_FIELDS}
    row["encryption_created_at"] = e.timestamp
    row["encryption_updated_at"] = None


def _encryption_updated(row: Row, e: ProjectionEvent) -> None:
    current = row.get("encryption")
    if isinstance(current, dict):  # SQL: NULL || changes stays NULL
        row["encryption"] = {**current, **e.data["changes"]}
    row["encryption_updated_at"] = e.timestamp


TYPE_STEPS: dict[str, tuple[Step, ...]] = {
    "VolumeType.Created": (insert(T, _type_created),),
    "VolumeType.Updated": (update(T, _type_updated),),
    "VolumeType.ExtraSpecsSet": (update(T, merge("extra_specs", lambda e: e.data["specs"])),),
    "VolumeType.ExtraSpecUnset": (update(T, without("extra_specs", "key")),),
    "VolumeType.AccessAdded": (update(T, _projects(lambda ps, p: [*ps, p])),),
    "VolumeType.AccessRemoved": (update(T, _projects(lambda ps, p: [x for x in ps if x != p])),),
    "VolumeType.Deleted": (update(T, const(deleted=True)),),
    "VolumeType.EncryptionCreated": (update(T, _encryption_created),),
    "VolumeType.EncryptionUpdated": (update(T, _encryption_updated),),
    "VolumeType.EncryptionDeleted": (
        update(T, const(encryption=None, encryption_created_at=None, encryption_updated_at=None)),
    ),
}

# ------------------------------------------------------------------- quotas

Q = "quotas"


def _usage_adjusted(row: Row, e: ProjectionEvent) -> None:
    row["in_use"] = jsonb_add(row["in_use"], e.data["deltas"])


def _reserved(row: Row, e: ProjectionEvent) -> None:
    current = row["reservations"] if isinstance(row["reservations"], dict) else {}
    row["reservations"] = {**current, e.data["reservation_id"]: jsonb(e.data["deltas"])}


def _committed(row: Row, e: ProjectionEvent) -> None:
    rid = e.data["reservation_id"]
    held = row["reservations"].get(rid) if isinstance(row["reservations"], dict) else None
    row["in_use"] = jsonb_add(row["in_use"], {} if held in (None, JSON_NULL) else held)
    without("reservations", "reservation_id")(row, e)


QUOTA_STEPS: dict[str, tuple[Step, ...]] = {
    "ProjectQuota.Created": (
        insert(Q, fields(project_id="project_id", updated_at=ts, version=version)),
    ),
    "ProjectQuota.UsageAdjusted": (update(Q, _usage_adjusted),),
    "ProjectQuota.Reserved": (update(Q, _reserved),),
    "ProjectQuota.ReservationCommitted": (update(Q, _committed),),
    "ProjectQuota.ReservationReleased": (update(Q, without("reservations", "reservation_id")),),
    "ProjectQuota.LimitsSet": (update(Q, merge("limits", lambda e: e.data["limits"])),),
    "ProjectQuota.LimitsCleared": (update(Q, const(limits={})),),
}
