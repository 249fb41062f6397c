"""Each event's effect on the read-model rows, stated once: ``folds`` steps registered by
event name (``STEPS``). The live projector, replay and verify, and the rows rebuilt from the
log (``cinderblock state``, the API while the read model is behind) all run these steps
(``rowstore.Folder``); nothing else encodes what an event does to a row.
"""

from __future__ import annotations

from cinderblock.readmodels.event import ProjectionEvent
from cinderblock.readmodels.folds import (
    Row,
    Step,
    chain,
    const,
    fields,
    insert,
    jsonb,
    touch,
    update,
)
from cinderblock.readmodels.messages import MESSAGE_STEPS
from cinderblock.readmodels.step_parts import (
    attachment_id,
    drop_attached_mode_if,
    keep_previous,
    merge,
    released_status,
    removed_ids,
    returned_status,
    status,
    text_changes,
    ts,
    without,
)
from cinderblock.readmodels.steps_resources import QUOTA_STEPS, SNAPSHOT_STEPS, TYPE_STEPS

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
    text_changes("name", "description")(row, e)
    if "metadata" in e.data["changes"]:
        row["metadata"] = jsonb(e.data["changes"]["metadata"])


def _retyped(row: Row, e: ProjectionEvent) -> None:
    d = e.data
    row["volume_type_id"] = d["new_type_id"]
    row["volume_type_name"] = d["new_type_name"]
    if d["host"] is not None:
        row["host"] = d["host"]
        row["migration_status"] = "success"
    returned_status(row, e)


def _retype_failed(row: Row, e: ProjectionEvent) -> None:
    row["multiattach"] = e.data["multiattach"]
    returned_status(row, e)


def _unmanage_requested(row: Row, e: ProjectionEvent) -> None:
    before = e.data["previous_status"]
    row["previous_status"] = before
    row["status"] = "error_managing_deleting" if before == "error_managing" else "unmanaging"


def _migration_started(row: Row, e: ProjectionEvent) -> None:
    before = e.data["previous_status"]
    row["previous_status"] = before
    row["migration_status"] = "starting"
    if e.data["lock_volume"] and before == "available":
        row["status"] = "maintenance"


_DETACH_ATTACHMENTS = touch(
    A, removed_ids, chain(const(deleted=True, attach_status="detached"), fields(detach_time=ts))
)
_GONE = chain(const(status="deleted", deleted=True), fields(deleted_at=ts))

VOLUME_STEPS: dict[str, tuple[Step, ...]] = {
    "Volume.Created": (insert(V, _volume_created),),
    "Volume.CreateCompleted": (update(V, chain(status("available"), fields(host="host"))),),
    "Volume.CreateFailed": (update(V, status("error")),),
    "Volume.ExtendRequested": (update(V, chain(keep_previous, status("extending"))),),
    "Volume.Extended": (update(V, fields(size="new_size_gb", status="status")),),
    "Volume.ExtendFailed": (update(V, fields(status="status")),),
    "Volume.BootableSet": (update(V, fields(bootable="bootable")),),
    "Volume.DeleteRequested": (update(V, chain(keep_previous, status("deleting"))),),
    "Volume.DeleteFailed": (update(V, status("error_deleting")),),
    "Volume.Deleted": (update(V, _GONE),),
    "Volume.Updated": (update(V, _volume_updated),),
    "Volume.RevertRequested": (update(V, status("reverting")),),
    "Volume.EncryptionSet": (update(V, fields(encryption_key_id="key_id")),),
    "Volume.SourceSet": (
        update(V, fields(snapshot_id="snapshot_id", source_volid="source_volid")),
    ),
    "Volume.Reencrypted": (
        update(V, chain(fields(encryption_key_id="key_id"), const(migration_status="success"))),
    ),
    "Volume.ReencryptFailed": (update(V, const(migration_status="error")),),
    "Volume.Reverted": (update(V, status("available")),),
    "Volume.RevertFailed": (update(V, status("error")),),
    "Volume.AttachmentReserved": (
        insert(A, _attachment_reserved, attachment_id),
        update(V, fields(status="status")),
    ),
    "Volume.AttachmentConnected": (
        touch(A, attachment_id, _attachment_connected),
        update(V, const(status="attaching", attach_status="attaching")),
    ),
    "Volume.AttachmentCompleted": (
        touch(A, attachment_id, chain(const(attach_status="attached"), fields(attach_time=ts))),
        update(V, const(status="in-use", attach_status="attached")),
    ),
    "Volume.Reserved": (update(V, status("attaching")),),
    "Volume.Unreserved": (update(V, fields(status="status")),),
    "Volume.Attached": (
        insert(A, _attachment_added, attachment_id),
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
                drop_attached_mode_if(
                    lambda e: (
                        bool(e.data.get("attachment_id")) or bool(e.data.get("removed_attachments"))
                    )
                ),
            ),
        ),
    ),
    "Volume.DetachingBegun": (update(V, status("detaching")),),
    "Volume.DetachingRolledBack": (update(V, status("in-use")),),
    "Volume.ReadonlyFlagUpdated": (
        update(
            V,
            merge(
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
                drop_attached_mode_if(lambda e: bool(e.data["removed_attachments"])),
                fields(migration_status="migration_status"),
            ),
        ),
    ),
    "Volume.ImageMetadataSet": (update(V, merge("image_metadata", lambda e: e.data["metadata"])),),
    "Volume.ImageMetadataUnset": (update(V, without("image_metadata", "key")),),
    "Volume.UploadRequested": (update(V, chain(keep_previous, status("uploading"))),),
    "Volume.Uploaded": (update(V, fields(status="status")),),
    "Volume.UploadFailed": (update(V, fields(status="status")),),
    "Volume.ReimageRequested": (update(V, chain(keep_previous, status("downloading"))),),
    "Volume.Reimaged": (
        update(
            V,
            chain(
                fields(status="status", image_metadata=lambda e: jsonb(e.data["image_metadata"])),
                const(bootable=True),
            ),
        ),
    ),
    "Volume.ReimageFailed": (update(V, chain(keep_previous, status("error"))),),
    "Volume.ImageWritten": (
        update(
            V,
            chain(
                fields(image_metadata=lambda e: jsonb(e.data["image_metadata"])),
                const(bootable=True),
            ),
        ),
    ),
    "Volume.RetypeRequested": (
        update(V, chain(keep_previous, status("retyping"), fields(multiattach="new_multiattach"))),
    ),
    "Volume.Retyped": (update(V, _retyped),),
    "Volume.RetypeFailed": (update(V, _retype_failed),),
    "Volume.UnmanageRequested": (update(V, _unmanage_requested),),
    "Volume.Unmanaged": (update(V, _GONE),),
    "Volume.UnmanageFailed": (update(V, status("error_unmanaging")),),
    "Volume.MigrationStarted": (update(V, _migration_started),),
    "Volume.MigrationCopying": (update(V, const(migration_status="migrating")),),
    "Volume.MigrationCompleted": (
        update(V, chain(fields(host="host"), const(migration_status="success"), released_status)),
    ),
    "Volume.MigrationFailed": (update(V, chain(const(migration_status="error"), released_status)),),
}


def _combined(*registries: dict[str, tuple[Step, ...]]) -> dict[str, tuple[Step, ...]]:
    """One registry: an event named in several (a failure also records a user message)
    runs the steps of each, in the order given."""
    combined: dict[str, tuple[Step, ...]] = {}
    for registry in registries:
        for name, steps in registry.items():
            combined[name] = combined.get(name, ()) + steps
    return combined


STEPS: dict[str, tuple[Step, ...]] = _combined(
    VOLUME_STEPS, SNAPSHOT_STEPS, TYPE_STEPS, QUOTA_STEPS, MESSAGE_STEPS
)


def tables_of(name: str) -> frozenset[str]:
    """The tables the projection of event ``name`` changes."""
    return frozenset(step.table for step in STEPS.get(name, ()))
