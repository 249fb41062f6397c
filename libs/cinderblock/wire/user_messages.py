"""Cinder's user messages (``cinder/message/message_field.py``, ``api.py``, the v3 messages
controller and view): the predefined Resource, Action and Detail fields a message is built
from, the ``event_id`` and ``user_message`` made of them, and the JSON view.

A message never carries free text: ``user_message`` is ``"<action>:<detail>"`` translated
from the stored ids at read time, exactly as Cinder's controller builds it, so nothing
internal (a backend's error text) reaches the user.

Cinder has no Action for a failed retype, migration, revert, volume delete or detach;
Cinderblock adds those in a block of its own (``1xx``) so that no id Cinder hands out next
(it is at ``016``) can ever mean something else here (``docs/decisions.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.views import ViewContext, format_time

MESSAGES_VERSION = APIVersion(3, 3)  # mv.MESSAGES
PAGINATION_VERSION = APIVersion(3, 5)  # mv.MESSAGES_PAGINATION
STRICT_FILTERS_VERSION = APIVersion(3, 31)  # mv.RESOURCE_FILTER
LIKE_FILTER_VERSION = APIVersion(3, 34)  # mv.LIKE_FILTER

MESSAGE_TTL = timedelta(seconds=2_592_000)  # Cinder's default ``message_ttl``
LEVEL_ERROR = "ERROR"

# The filters Cinder's resource_filters.json enables for messages (a non-admin may use only
# these from 3.31 on; ``key~`` for a LIKE match from 3.34).
ENABLED_FILTERS = ("resource_uuid", "resource_type", "event_id", "request_id", "message_level")


class Resource:
    VOLUME = "VOLUME"
    VOLUME_SNAPSHOT = "VOLUME_SNAPSHOT"


Field = tuple[str, str]


class Action:
    """Cinder's actions (message_field.Action), then Cinderblock's own (``1xx``)."""

    SCHEDULE_ALLOCATE_VOLUME: Field = ("001", "schedule allocate volume")
    ATTACH_VOLUME: Field = ("002", "attach volume")
    COPY_VOLUME_TO_IMAGE: Field = ("003", "copy volume to image")
    UPDATE_ATTACHMENT: Field = ("004", "update attachment")
    COPY_IMAGE_TO_VOLUME: Field = ("005", "copy image to volume")
    UNMANAGE_VOLUME: Field = ("006", "unmanage volume")
    EXTEND_VOLUME: Field = ("007", "extend volume")
    CREATE_VOLUME_FROM_BACKEND: Field = ("008", "create volume from backend storage")
    SNAPSHOT_CREATE: Field = ("009", "create snapshot")
    SNAPSHOT_DELETE: Field = ("010", "delete snapshot")
    SNAPSHOT_UPDATE: Field = ("011", "update snapshot")
    SNAPSHOT_METADATA_UPDATE: Field = ("012", "update snapshot metadata")
    BACKUP_CREATE: Field = ("013", "create backup")
    BACKUP_DELETE: Field = ("014", "delete backup")
    BACKUP_RESTORE: Field = ("015", "restore backup")
    REIMAGE_VOLUME: Field = ("016", "reimage volume")
    # Cinderblock's: asynchronous steps Cinder records no message for.
    RETYPE_VOLUME: Field = ("101", "retype volume")
    MIGRATE_VOLUME: Field = ("102", "migrate volume")
    REVERT_VOLUME: Field = ("103", "revert volume to snapshot")
    DELETE_VOLUME: Field = ("104", "delete volume")
    DETACH_VOLUME: Field = ("105", "detach volume")

    ALL: tuple[Field, ...] = (
        SCHEDULE_ALLOCATE_VOLUME,
        ATTACH_VOLUME,
        COPY_VOLUME_TO_IMAGE,
        UPDATE_ATTACHMENT,
        COPY_IMAGE_TO_VOLUME,
        UNMANAGE_VOLUME,
        EXTEND_VOLUME,
        CREATE_VOLUME_FROM_BACKEND,
        SNAPSHOT_CREATE,
        SNAPSHOT_DELETE,
        SNAPSHOT_UPDATE,
        SNAPSHOT_METADATA_UPDATE,
        BACKUP_CREATE,
        BACKUP_DELETE,
        BACKUP_RESTORE,
        REIMAGE_VOLUME,
        RETYPE_VOLUME,
        MIGRATE_VOLUME,
        REVERT_VOLUME,
        DELETE_VOLUME,
        DETACH_VOLUME,
    )


class Detail:
    """Cinder's details (message_field.Detail), texts unchanged."""

    UNKNOWN_ERROR: Field = ("001", "An unknown error occurred.")
    DRIVER_NOT_INITIALIZED: Field = ("002", "Driver is not initialized at present.")
    NO_BACKEND_AVAILABLE: Field = ("003", "Could not find any available weighted backend.")
    FAILED_TO_UPLOAD_VOLUME: Field = ("004", "Failed to upload volume to image at backend.")
    VOLUME_ATTACH_MODE_INVALID: Field = ("005", "Volume's attach mode is invalid.")
    QUOTA_EXCEED: Field = ("006", "Not enough quota resource for operation.")
    NOT_ENOUGH_SPACE_FOR_IMAGE: Field = (
        "007",
        "Image used for creating volume exceeds available space.",
    )
    UNMANAGE_ENC_NOT_SUPPORTED: Field = ("008", "Unmanaging encrypted volumes is not supported.")
    NOTIFY_COMPUTE_SERVICE_FAILED: Field = ("009", "Compute service failed to extend volume.")
    DRIVER_FAILED_EXTEND: Field = ("010", "Volume Driver failed to extend volume.")
    SIGNATURE_VERIFICATION_FAILED: Field = ("011", "Image signature verification failed.")
    DRIVER_FAILED_CREATE: Field = ("012", "Driver failed to create the volume.")
    SNAPSHOT_CREATE_ERROR: Field = ("013", "Snapshot failed to create.")
    SNAPSHOT_UPDATE_METADATA_FAILED: Field = ("014", "Volume snapshot update metadata failed.")
    SNAPSHOT_IS_BUSY: Field = ("015", "Snapshot is busy.")
    SNAPSHOT_DELETE_ERROR: Field = ("016", "Snapshot failed to delete.")
    BACKUP_INVALID_STATE: Field = ("017", "Backup status is invalid.")
    BACKUP_SERVICE_DOWN: Field = ("018", "Backup service is down.")
    BACKUP_CREATE_DEVICE_ERROR: Field = (
        "019",
        "Failed to get backup device from the volume service.",
    )
    BACKUP_CREATE_DRIVER_ERROR: Field = ("020", "Backup driver failed to create backup.")
    ATTACH_ERROR: Field = ("021", "Failed to attach volume.")
    DETACH_ERROR: Field = ("022", "Failed to detach volume.")
    BACKUP_CREATE_CLEANUP_ERROR: Field = ("023", "Cleanup of temporary volume/snapshot failed.")
    BACKUP_SCHEDULE_ERROR: Field = (
        "024",
        "Backup failed to schedule. Service not found for creating backup.",
    )
    BACKUP_DELETE_DRIVER_ERROR: Field = ("025", "Backup driver failed to delete backup.")
    BACKUP_RESTORE_ERROR: Field = ("026", "Backup driver failed to restore backup.")
    VOLUME_INVALID_STATE: Field = ("027", "Volume status is invalid.")
    REIMAGE_VOLUME_FAILED: Field = ("028", "Compute service failed to reimage volume.")
    IMAGE_FORMAT_UNACCEPTABLE: Field = (
        "029",
        "The image disk format must be the same as the volume format for the volume type you "
        "are requesting.",
    )
    INCREMENTAL_BACKUP_FORCES_FULL_BACKUP: Field = (
        "030",
        "Incremental backup not possible, forcing full backup.",
    )

    ALL: tuple[Field, ...] = (
        UNKNOWN_ERROR,
        DRIVER_NOT_INITIALIZED,
        NO_BACKEND_AVAILABLE,
        FAILED_TO_UPLOAD_VOLUME,
        VOLUME_ATTACH_MODE_INVALID,
        QUOTA_EXCEED,
        NOT_ENOUGH_SPACE_FOR_IMAGE,
        UNMANAGE_ENC_NOT_SUPPORTED,
        NOTIFY_COMPUTE_SERVICE_FAILED,
        DRIVER_FAILED_EXTEND,
        SIGNATURE_VERIFICATION_FAILED,
        DRIVER_FAILED_CREATE,
        SNAPSHOT_CREATE_ERROR,
        SNAPSHOT_UPDATE_METADATA_FAILED,
        SNAPSHOT_IS_BUSY,
        SNAPSHOT_DELETE_ERROR,
        BACKUP_INVALID_STATE,
        BACKUP_SERVICE_DOWN,
        BACKUP_CREATE_DEVICE_ERROR,
        BACKUP_CREATE_DRIVER_ERROR,
        ATTACH_ERROR,
        DETACH_ERROR,
        BACKUP_CREATE_CLEANUP_ERROR,
        BACKUP_SCHEDULE_ERROR,
        BACKUP_DELETE_DRIVER_ERROR,
        BACKUP_RESTORE_ERROR,
        VOLUME_INVALID_STATE,
        REIMAGE_VOLUME_FAILED,
        IMAGE_FORMAT_UNACCEPTABLE,
        INCREMENTAL_BACKUP_FORCES_FULL_BACKUP,
    )


_ACTIONS = dict(Action.ALL)
_DETAILS = dict(Detail.ALL)


def translate_action(action_id: str | None) -> str:
    """Cinder's ``translate_action``: the action's text, ``unknown action`` otherwise."""
    return _ACTIONS.get(action_id or "", "unknown action")


def translate_detail(detail_id: str | None) -> str:
    """Cinder's ``translate_detail``: the detail's text, the unknown error's otherwise."""
    return _DETAILS.get(detail_id or "", Detail.UNKNOWN_ERROR[1])


def event_id(resource_type: str, action: Field, detail: Field) -> str:
    """``VOLUME_<resource>_<action id>_<detail id>`` (message api ``create``)."""
    return f"VOLUME_{resource_type}_{action[0]}_{detail[0]}"


def user_message(action_id: str | None, detail_id: str | None) -> str:
    """What the controller shows: ``"<action>:<detail>"`` (no space, as Cinder)."""
    return f"{translate_action(action_id)}:{translate_detail(detail_id)}"


def message_not_found_text(message_id: str) -> str:
    """Cinder's MessageNotFound."""
    return f"Message {message_id} could not be found."


def message_links(message_id: str, ctx: ViewContext) -> list[dict[str, str]]:
    """``self`` (under ``/v3``) and ``bookmark`` links, the project as the URL had it."""
    base = ctx.base_url.rstrip("/")
    project = f"{ctx.project_in_url}/" if ctx.project_in_url else ""
    return [
        {"href": f"{base}/v3/{project}messages/{message_id}", "rel": "self"},
        {"href": f"{base}/{project}messages/{message_id}", "rel": "bookmark"},
    ]


def message_view(row: Mapping[str, Any], ctx: ViewContext) -> dict[str, Any]:
    """Cinder's ``ViewBuilder.detail`` of a message row (``readmodels.messages`` columns):
    ``guaranteed_until`` is the row's ``expires_at``; the resource keys only when set."""
    message_id = str(row["id"])
    view: dict[str, Any] = {
        "id": message_id,
        "event_id": row["event_id"],
        "user_message": user_message(row["action_id"], row["detail_id"]),
        "message_level": row["message_level"],
        "created_at": format_time(row["created_at"]),
        "guaranteed_until": format_time(row["expires_at"]),
        "request_id": row["request_id"],
        "links": message_links(message_id, ctx),
    }
    if row.get("resource_type"):
        view["resource_type"] = row["resource_type"]
    if row.get("resource_uuid"):
        view["resource_uuid"] = str(row["resource_uuid"])
    return view
