"""Replay's projections: each event's effect on read-model rows as ``folds`` steps,
registered by event name (``STEPS``).

The live projector applies ``projections.PROJECTIONS`` (SQL statements, executemany per
batch); these steps say the same in Python so replay can fold thousands of events per batch
in memory and write set-based. Both registries must name the same events
(``tests/contract/test_projections.py``) and agree on every row (``cinderblock verify``,
``tests/integration/replay``): a change to one is a change to both.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from cinderblock.readmodels.folds import (
    JSON_NULL,
    Row,
    Step,
    as_bool,
    as_text,
    chain,
    const,
    fields,
    insert,
    jsonb,
    jsonb_add,
    touch,
    update,
)
from cinderblock.readmodels.projections import ProjectionEvent


def _ts(e: ProjectionEvent) -> Any:
    return e.timestamp


def _version(e: ProjectionEvent) -> int:
    return e.version


def _attachment_id(e: ProjectionEvent) -> list[UUID]:
    return [UUID(e.data["attachment_id"])]


def _removed_ids(e: ProjectionEvent) -> list[UUID]:
    ids = e.data.get("removed_attachments")
    if ids is None:
        ids = [e.data["attachment_id"]] if e.data.get("attachment_id") else []
    return [UUID(i) for i in ids]


def _keep_previous(row: Row, _e: ProjectionEvent) -> None:
    row["previous_status"] = row["status"]


def _status(status: str) -> Any:
    return const(status=status)


def _restore_held(row: Row, _e: ProjectionEvent) -> None:
    """A migration hands back the status it held (maintenance, retyping) when it ends."""
    if row["status"] in ("maintenance", "retyping"):
        row["status"] = row["previous_status"] or "available"


def _drop_attached_mode_if(removed: Any) -> Any:
    def change(row: Row, e: ProjectionEvent) -> None:
        if removed(e):
            meta = row["admin_metadata"]
            if isinstance(meta, dict):
                row["admin_metadata"] = {k: v for k, v in meta.items() if k != "attached_mode"}

    return change


def _merge(column: str, part: Any) -> Any:
    """jsonb ``column || part(e)``: keys of the right side win."""

    def change(row: Row, e: ProjectionEvent) -> None:
        current = row[column]
        row[column] = {**(current if isinstance(current, dict) else {}), **part(e)}

    return change


def _without(column: str, field: str) -> Any:
    def change(row: Row, e: ProjectionEvent) -> None:
        current = row[column]
        if isinstance(current, dict):
            row[column] = {k: v for k, v in current.items() if k != e.data[field]}

    return change


def _text_changes(*keys: str) -> Any:
    """name/description from ``changes``: set when the key is present (``->>`` text)."""

    def change(row: Row, e: ProjectionEvent) -> None:
        changes = e.data["changes"]
        for key in keys:
            if key in changes:
                row[key] = as_text(changes[key])

    return change


# ------------------------------------------------------------------ volumes

V = "volumes"
A = "attachments"


def _volume_created(row: Row, e: ProjectionEvent) -> None:
    d = e.data
    row.update(
        project_id=d["project_id"],
        user_id=d["user_id"],
        name=d["name"],
        description=d["description"],
        size=d["size_gb"],
        status="creating",
        availability_zone=d["availability_zone"],
        volume_type_id=d["volume_type_id"],
        volume_type_name=d["volume_type_name"],
        bootable=d["bootable"],
        multiattach=d["multiattach"],
        metadata=jsonb(d["metadata"]),
        created_at=e.timestamp,
        version=e.version,
    )


def _attachment_added(row: Row, e: ProjectionEvent) -> None:
    d = e.data
    row.update(
        volume_id=e.aggregate_id,
        instance_uuid=d["instance_uuid"],
        attached_host=d["attached_host"],
        mountpoint=d["mountpoint"],
        attach_status="attached",
        attach_mode=d["mode"],
        attach_time=e.timestamp,
        version=e.version,
    )


def _attachment_reserved(row: Row, e: ProjectionEvent) -> None:
    d = e.data
    row.update(
        volume_id=e.aggregate_id,
        instance_uuid=d["instance_uuid"],
        attach_status="reserved",
        attach_mode=d["mode"],
        version=e.version,
    )


def _attachment_connected(row: Row, e: ProjectionEvent) -> None:
    d = e.data
    row.update(
        attach_status="attaching",
        attached_host=d["attached_host"],
        mountpoint=d["mountpoint"],
        attach_mode=d["mode"],
        connector=jsonb(d["connector"]),
        connection_info=jsonb(d["connection_info"]),
    )


def _attached_mode(row: Row, e: ProjectionEvent) -> None:
    """``{"readonly": "False"} || admin_metadata || {"attached_mode": mode}``."""
    current = row["admin_metadata"] if isinstance(row["admin_metadata"], dict) else {}
    row["admin_metadata"] = {"readonly": "False", **current, "attached_mode": e.data["mode"]}


def _volume_updated(row: Row, e: ProjectionEvent) -> None:
    _text_changes("name", "description")(row, e)
    if "metadata" in e.data["changes"]:
        row["metadata"] = jsonb(e.data["changes"]["metadata"])


def _retyped(row: Row, e: ProjectionEvent) -> None:
    d = e.data
    row["volume_type_id"] = d["new_type_id"]
    row["volume_type_name"] = d["new_type_name"]
    if d["host"] is not None:
        row["host"] = d["host"]
        row["migration_status"] = "success"
    row["status"] = row["previous_status"] or "available"


def _retype_failed(row: Row, e: ProjectionEvent) -> None:
    row["multiattach"] = e.data["multiattach"]
    row["status"] = row["previous_status"] or "available"


def _unmanage_requested(row: Row, _e: ProjectionEvent) -> None:
    row["previous_status"] = row["status"]
    row["status"] = "error_managing_deleting" if row["status"] == "error_managing" else "unmanaging"


def _migration_started(row: Row, e: ProjectionEvent) -> None:
    row["previous_status"] = row["status"]
    row["migration_status"] = "starting"
    if e.data["lock_volume"] and row["status"] == "available":
        row["status"] = "maintenance"


_DETACH_ATTACHMENTS = touch(
    A, _removed_ids, chain(const(deleted=True, attach_status="detached"), fields(detach_time=_ts))
)
_GONE = chain(const(status="deleted", deleted=True), fields(deleted_at=_ts))

VOLUME_STEPS: dict[str, tuple[Step, ...]] = {
    "Volume.Created": (insert(V, _volume_created),),
    "Volume.CreateCompleted": (update(V, chain(_status("available"), fields(host="host"))),),
    "Volume.CreateFailed": (update(V, _status("error")),),
    "Volume.ExtendRequested": (update(V, chain(_keep_previous, _status("extending"))),),
    "Volume.Extended": (update(V, fields(size="new_size_gb", status="status")),),
    "Volume.ExtendFailed": (update(V, fields(status="status")),),
    "Volume.BootableSet": (update(V, fields(bootable="bootable")),),
    "Volume.DeleteRequested": (update(V, chain(_keep_previous, _status("deleting"))),),
    "Volume.DeleteFailed": (update(V, _status("error_deleting")),),
    "Volume.Deleted": (update(V, _GONE),),
    "Volume.Updated": (update(V, _volume_updated),),
    "Volume.RevertRequested": (update(V, _status("reverting")),),
    "Volume.EncryptionSet": (update(V, fields(encryption_key_id="key_id")),),
    "Volume.Reencrypted": (
        update(V, chain(fields(encryption_key_id="key_id"), const(migration_status="success"))),
    ),
    "Volume.ReencryptFailed": (update(V, const(migration_status="error")),),
    "Volume.Reverted": (update(V, _status("available")),),
    "Volume.RevertFailed": (update(V, _status("error")),),
    "Volume.AttachmentReserved": (
        insert(A, _attachment_reserved, _attachment_id),
        update(V, fields(status="status")),
    ),
    "Volume.AttachmentConnected": (
        touch(A, _attachment_id, _attachment_connected),
        update(V, const(status="attaching", attach_status="attaching")),
    ),
    "Volume.AttachmentCompleted": (
        touch(A, _attachment_id, chain(const(attach_status="attached"), fields(attach_time=_ts))),
        update(V, const(status="in-use", attach_status="attached")),
    ),
    "Volume.Reserved": (update(V, _status("attaching")),),
    "Volume.Unreserved": (update(V, fields(status="status")),),
    "Volume.Attached": (
        insert(A, _attachment_added, _attachment_id),
        update(
            V,
            chain(const(status="in-use", attach_status="attached"), _attached_mode),
        ),
    ),
    "Volume.Detached": (
        _DETACH_ATTACHMENTS,
        update(
            V,
            chain(
                fields(status="status", attach_status="attach_status"),
                _drop_attached_mode_if(
                    lambda e: (
                        bool(e.data.get("attachment_id")) or bool(e.data.get("removed_attachments"))
                    )
                ),
            ),
        ),
    ),
    "Volume.DetachingBegun": (update(V, _status("detaching")),),
    "Volume.DetachingRolledBack": (update(V, _status("in-use")),),
    "Volume.ReadonlyFlagUpdated": (
        update(
            V,
            _merge(
                "admin_metadata", lambda e: {"readonly": "True" if e.data["readonly"] else "False"}
            ),
        ),
    ),
    "Volume.StatusReset": (
        _DETACH_ATTACHMENTS,
        update(
            V,
            chain(
                fields(status="status", attach_status="attach_status"),
                _drop_attached_mode_if(lambda e: bool(e.data["removed_attachments"])),
                fields(migration_status="migration_status"),
            ),
        ),
    ),
    "Volume.ImageMetadataSet": (update(V, _merge("image_metadata", lambda e: e.data["metadata"])),),
    "Volume.ImageMetadataUnset": (update(V, _without("image_metadata", "key")),),
    "Volume.UploadRequested": (update(V, chain(_keep_previous, _status("uploading"))),),
    "Volume.Uploaded": (update(V, fields(status="status")),),
    "Volume.UploadFailed": (update(V, fields(status="status")),),
    "Volume.RetypeRequested": (
        update(
            V, chain(_keep_previous, _status("retyping"), fields(multiattach="new_multiattach"))
        ),
    ),
    "Volume.Retyped": (update(V, _retyped),),
    "Volume.RetypeFailed": (update(V, _retype_failed),),
    "Volume.UnmanageRequested": (update(V, _unmanage_requested),),
    "Volume.Unmanaged": (update(V, _GONE),),
    "Volume.UnmanageFailed": (update(V, _status("error_unmanaging")),),
    "Volume.MigrationStarted": (update(V, _migration_started),),
    "Volume.MigrationCopying": (update(V, const(migration_status="migrating")),),
    "Volume.MigrationCompleted": (
        update(V, chain(fields(host="host"), const(migration_status="success"), _restore_held)),
    ),
    "Volume.MigrationFailed": (update(V, chain(const(migration_status="error"), _restore_held)),),
}

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


SNAPSHOT_STEPS: dict[str, tuple[Step, ...]] = {
    "Snapshot.Created": (insert(S, _snapshot_created),),
    "Snapshot.CreateCompleted": (update(S, const(status="available", progress="100%")),),
    "Snapshot.CreateFailed": (update(S, _status("error")),),
    "Snapshot.Updated": (update(S, _text_changes("name", "description")),),
    "Snapshot.DeleteRequested": (update(S, _status("deleting")),),
    "Snapshot.Deleted": (update(S, const(status="deleted", deleted=True)),),
    "Snapshot.DeleteFailed": (update(S, _status("error_deleting")),),
    "Snapshot.RestoreStarted": (update(S, _status("restoring")),),
    "Snapshot.RestoreEnded": (update(S, _status("available")),),
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
    "VolumeType.ExtraSpecsSet": (update(T, _merge("extra_specs", lambda e: e.data["specs"])),),
    "VolumeType.ExtraSpecUnset": (update(T, _without("extra_specs", "key")),),
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
    _without("reservations", "reservation_id")(row, e)


QUOTA_STEPS: dict[str, tuple[Step, ...]] = {
    "ProjectQuota.Created": (
        insert(Q, fields(project_id="project_id", updated_at=_ts, version=_version)),
    ),
    "ProjectQuota.UsageAdjusted": (update(Q, _usage_adjusted),),
    "ProjectQuota.Reserved": (update(Q, _reserved),),
    "ProjectQuota.ReservationCommitted": (update(Q, _committed),),
    "ProjectQuota.ReservationReleased": (update(Q, _without("reservations", "reservation_id")),),
    "ProjectQuota.LimitsSet": (update(Q, _merge("limits", lambda e: e.data["limits"])),),
    "ProjectQuota.LimitsCleared": (update(Q, const(limits={})),),
}

STEPS: dict[str, tuple[Step, ...]] = {
    **VOLUME_STEPS,
    **SNAPSHOT_STEPS,
    **TYPE_STEPS,
    **QUOTA_STEPS,
}


def tables_of(name: str) -> frozenset[str]:
    """The tables the projection of event ``name`` changes."""
    return frozenset(step.table for step in STEPS.get(name, ()))
