"""Cinder's status vocabularies, as stored on the Volume aggregate."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Volume ``status`` values (cinder.objects.fields.VolumeStatus plus ``reverting``)."""

    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    ERROR_MANAGING = "error_managing"
    MANAGING = "managing"
    ATTACHING = "attaching"
    IN_USE = "in-use"
    DETACHING = "detaching"
    MAINTENANCE = "maintenance"
    RESTORING_BACKUP = "restoring-backup"
    ERROR_RESTORING = "error_restoring"
    RESERVED = "reserved"
    AWAITING_TRANSFER = "awaiting-transfer"
    BACKING_UP = "backing-up"
    ERROR_BACKING_UP = "error_backing-up"
    ERROR_EXTENDING = "error_extending"
    DOWNLOADING = "downloading"
    UPLOADING = "uploading"
    RETYPING = "retyping"
    EXTENDING = "extending"
    REVERTING = "reverting"
    DELETED = "deleted"
    UNMANAGING = "unmanaging"
    ERROR_UNMANAGING = "error_unmanaging"
    ERROR_MANAGING_DELETING = "error_managing_deleting"


class AttachStatus(StrEnum):
    """Volume ``attach_status`` values."""

    DETACHED = "detached"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    RESERVED = "reserved"
    DETACHING = "detaching"
    ERROR_ATTACHING = "error_attaching"
    ERROR_DETACHING = "error_detaching"


# A plain (non-forced) delete is allowed only from these statuses (spec §2.4).
DELETABLE = frozenset(
    {
        Status.AVAILABLE,
        Status.ERROR,
        Status.ERROR_RESTORING,
        Status.ERROR_EXTENDING,
        Status.ERROR_MANAGING,
    }
)

# "Not migrating" for every precondition check (spec §6.3).
NOT_MIGRATING = frozenset({None, "deleting", "error", "success"})
