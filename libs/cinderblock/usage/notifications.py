"""Cinder-compatible notifications from stored events (pure).

Names, priorities and payload keys follow Cinder: ``volume.<action>.start/.end`` built by
``volume_utils._usage_from_volume`` and ``snapshot.*`` by ``_usage_from_snapshot``, in the
oslo.messaging envelope (``message_id``, ``publisher_id``, ``event_type``, ``priority``,
``timestamp``, ``payload``). The payload is the aggregate's state replayed to the event, so
the same event always yields the same notification; ``message_id`` is derived from the
event id, so a redelivered event republishes the same id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# A fixed namespace: message ids are uuid5(NAMESPACE, "<aggregate id>:<version>:<event type>").
NAMESPACE = uuid.UUID("6b1f0f8e-5a8c-4b8e-9d43-1c2d0e6f7a10")

INFO, ERROR = "INFO", "ERROR"
BEFORE, AFTER = "before", "after"

# Event → (event type, which state the payload shows); two entries where one stored event
# stands for Cinder's whole start/end pair.
VOLUME_NOTIFICATIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "Volume.Created": (("volume.create.start", AFTER),),
    "Volume.CreateCompleted": (("volume.create.end", AFTER),),
    "Volume.ExtendRequested": (("volume.resize.start", AFTER),),
    "Volume.Extended": (("volume.resize.end", AFTER),),
    "Volume.DeleteRequested": (("volume.delete.start", AFTER),),
    "Volume.Deleted": (("volume.delete.end", AFTER),),
    "Volume.Attached": (("volume.attach.start", BEFORE), ("volume.attach.end", AFTER)),
    "Volume.AttachmentConnected": (("volume.attach.start", AFTER),),
    "Volume.AttachmentCompleted": (("volume.attach.end", AFTER),),
    "Volume.Detached": (("volume.detach.start", BEFORE), ("volume.detach.end", AFTER)),
    "Volume.Retyped": (("volume.retype", AFTER),),
    "Volume.RevertRequested": (("volume.revert.start", AFTER),),
    "Volume.Reverted": (("volume.revert.end", AFTER),),
    "Volume.Updated": (("volume.update.start", BEFORE), ("volume.update.end", AFTER)),
    "Volume.StatusReset": (
        ("volume.reset_status.start", BEFORE),
        ("volume.reset_status.end", AFTER),
    ),
    "Volume.UnmanageRequested": (("volume.unmanage.start", AFTER),),
    "Volume.Unmanaged": (("volume.unmanage.end", AFTER),),
}

# Every snapshot notification Cinder sends (``notify_about_snapshot_usage``): create and
# delete by the volume manager, revert around a volume's revert to it, update by the API's
# PUT /snapshots/{id}, reset_status by the admin action. Nothing for a failed create or
# delete (Cinder's manager re-raises), nor for the metadata endpoints.
SNAPSHOT_NOTIFICATIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "Snapshot.Created": (("snapshot.create.start", AFTER),),
    "Snapshot.CreateCompleted": (("snapshot.create.end", AFTER),),
    "Snapshot.DeleteRequested": (("snapshot.delete.start", AFTER),),
    "Snapshot.Deleted": (("snapshot.delete.end", AFTER),),
    "Snapshot.RestoreStarted": (("snapshot.revert.start", AFTER),),
    "Snapshot.RestoreEnded": (("snapshot.revert.end", AFTER),),
    "Snapshot.Updated": (("snapshot.update.start", BEFORE), ("snapshot.update.end", AFTER)),
    "Snapshot.StatusReset": (
        ("snapshot.reset_status.start", BEFORE),
        ("snapshot.reset_status.end", AFTER),
    ),
}
# Snapshot.Updated also records the metadata endpoints' changes, which Cinder does not
# notify: only a change of these (PUT /snapshots/{id}) is ``snapshot.update.*``.
SNAPSHOT_UPDATE_FIELDS = frozenset({"name", "description"})

# What Cinder's scheduler sends at ERROR priority when it cannot place a create or an
# extend (scheduler/manager.py ``_set_volume_state_and_notify``).
SCHEDULER_ERRORS = {"Volume.CreateFailed": "create_volume", "Volume.ExtendFailed": "extend_volume"}


@dataclass(frozen=True)
class Notification:
    message_id: str
    publisher_id: str
    event_type: str
    priority: str
    timestamp: str
    payload: dict[str, Any]

    def message(self) -> dict[str, Any]:
        """The oslo.messaging notification message (what ``Notifier._notify`` builds)."""
        return {
            "message_id": self.message_id,
            "publisher_id": self.publisher_id,
            "event_type": self.event_type,
            "priority": self.priority,
            "payload": self.payload,
            "timestamp": self.timestamp,
        }

    @property
    def subject_tail(self) -> str:
        """``notifications.<priority>.<event_type>`` (oslo's routing key plus the type)."""
        return f"notifications.{self.priority.lower()}.{self.event_type}"


def event_name(event: Any) -> str:
    """``Volume.Extended`` for a domain event (events declared on mixins are re-declared on
    the aggregate, so the qualified name names the aggregate)."""
    return str(type(event).__qualname__)


def oslo_timestamp(at: datetime) -> str:
    """``str(utcnow())`` as oslo writes it: space separator, no timezone."""
    return str(at.astimezone(UTC).replace(tzinfo=None))


def message_id(aggregate_id: Any, version: int, event_type: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{aggregate_id}:{version}:{event_type}"))


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).replace(tzinfo=None).isoformat()


def _backend(host: str | None) -> str | None:
    return None if host is None else host.partition("#")[0]


def volume_payload(volume: Any, *, launched_at: datetime | None, now: datetime) -> dict[str, Any]:
    """``_usage_from_volume``: Cinder's keys, values from the replayed aggregate."""
    status = str(volume.status.value)
    attachments = [
        {
            "id": attachment_id,
            "volume_id": volume.vid,
            "instance_uuid": row.get("instance_uuid"),
            "attached_host": row.get("attached_host"),
            "mountpoint": row.get("mountpoint"),
            "attach_time": row.get("attach_time"),
            "attach_status": row.get("attach_status"),
            "attach_mode": row.get("attach_mode"),
        }
        for attachment_id, row in sorted(volume.attachments.items())
    ]
    payload: dict[str, Any] = {
        "tenant_id": volume.project_id,
        "host": volume.host,
        "user_id": volume.user_id,
        "availability_zone": volume.availability_zone,
        "volume_id": volume.vid,
        "volume_type": volume.volume_type_id,
        "display_name": volume.name,
        "launched_at": _iso(launched_at or now),
        "created_at": _iso(volume.created_on),
        "status": "deleting" if status == "error_managing_deleting" else status,
        "snapshot_id": getattr(volume, "snapshot_id", None),
        "size": volume.size_gb,
        "replication_status": getattr(volume, "replication_status", None),
        "replication_extended_status": None,
        "replication_driver_data": None,
        "metadata": dict(volume.metadata),
        "volume_attachment": attachments,
    }
    if volume.image_metadata:
        payload["glance_metadata"] = [
            {"volume_id": volume.vid, "key": k, "value": v}
            for k, v in sorted(volume.image_metadata.items())
        ]
    return payload


def volume_notifications(
    events: Sequence[Any], version: int, *, default_host: str
) -> list[Notification]:
    """The notifications of the volume event at ``version``; ``events`` are the volume's
    events from version 1 at least up to it, in order."""
    volume: Any = None
    launched_at: datetime | None = None
    before: dict[str, Any] | None = None
    target: Any = None
    for event in events:
        if event.originator_version > version:
            break
        if event.originator_version == version:
            target = event
            if volume is not None:
                before = volume_payload(volume, launched_at=launched_at, now=event.timestamp)
        volume = event.mutate(volume)
        if event_name(event) == "Volume.CreateCompleted":
            launched_at = event.timestamp
    if target is None:
        return []
    return step_notifications(before, volume, target, launched_at, default_host=default_host)


def wants_notification(event: Any) -> bool:
    """Whether the event stands for any notification (most do not: bootable, metadata…)."""
    name = event_name(event)
    if name == "Snapshot.Updated":
        return not SNAPSHOT_UPDATE_FIELDS.isdisjoint(event.changes)
    return (
        name in VOLUME_NOTIFICATIONS or name in SCHEDULER_ERRORS or name in SNAPSHOT_NOTIFICATIONS
    )


def step_notifications(
    before: dict[str, Any] | None,
    volume: Any,
    target: Any,
    launched_at: datetime | None,
    *,
    default_host: str,
) -> list[Notification]:
    """The notifications of one volume event: ``before`` is the payload of the volume just
    before ``target`` (None for the first event), ``volume`` the aggregate just after."""
    name = event_name(target)
    version = target.originator_version
    after = volume_payload(volume, launched_at=launched_at, now=target.timestamp)
    publisher = f"volume.{_backend(volume.host) or default_host}"
    stamp = oslo_timestamp(target.timestamp)
    out = [
        Notification(
            message_id(volume.id, version, event_type),
            publisher,
            event_type,
            INFO,
            stamp,
            before if which == BEFORE and before is not None else after,
        )
        for event_type, which in VOLUME_NOTIFICATIONS.get(name, ())
    ]
    method = SCHEDULER_ERRORS.get(name)
    # An extend that ends in error_extending failed on the backend: Cinder's manager sends
    # nothing then; one restored to its status was refused for capacity (the scheduler's).
    unplaced = method == "extend_volume" and not str(target.status).startswith("error")
    if method == "create_volume" or unplaced:
        out.append(_scheduler_error(volume, target, str(method), after, default_host, stamp))
    return out


def _scheduler_error(
    volume: Any, event: Any, method: str, usage: dict[str, Any], host: str, stamp: str
) -> Notification:
    event_type = f"scheduler.{method}"
    payload = {
        "request_spec": {"volume_id": volume.vid, "volume_properties": usage},
        "volume_properties": usage,
        "volume_id": volume.vid,
        "state": usage["status"],
        "method": method,
        "reason": getattr(event, "reason", ""),
    }
    return Notification(
        message_id(volume.id, event.originator_version, event_type),
        f"scheduler.{host}",
        event_type,
        ERROR,
        stamp,
        payload,
    )


def snapshot_payload(snapshot: Any, *, availability_zone: str | None) -> dict[str, Any]:
    """``_usage_from_snapshot``; ``deleted`` and ``metadata`` are strings there
    (``null_safe_str``), and so they are here. The zone is the one the snapshot recorded
    (its volume's), else ``availability_zone``."""
    deleted = str(snapshot.status) == "deleted"
    return {
        "tenant_id": snapshot.project_id,
        "user_id": snapshot.user_id,
        "availability_zone": getattr(snapshot, "availability_zone", None) or availability_zone,
        "volume_id": snapshot.volume_id,
        "volume_size": snapshot.volume_size,
        "snapshot_id": str(snapshot.id),
        "display_name": snapshot.name,
        "created_at": _iso(snapshot.created_on),
        "status": str(snapshot.status),
        "deleted": "True" if deleted else "",
        "metadata": str(snapshot.metadata) if snapshot.metadata else "",
    }


def snapshot_step_notifications(
    before: dict[str, Any] | None,
    snapshot: Any,
    target: Any,
    *,
    availability_zone: str | None,
    host: str,
) -> list[Notification]:
    """The notifications of one snapshot event: ``before`` is the payload of the snapshot
    just before ``target`` (None for the first event), ``snapshot`` the aggregate after."""
    if not wants_notification(target):
        return []
    after = snapshot_payload(snapshot, availability_zone=availability_zone)
    stamp = oslo_timestamp(target.timestamp)
    return [
        Notification(
            message_id(snapshot.id, target.originator_version, event_type),
            f"snapshot.{host}",
            event_type,
            INFO,
            stamp,
            before if which == BEFORE and before is not None else after,
        )
        for event_type, which in SNAPSHOT_NOTIFICATIONS.get(event_name(target), ())
    ]


def snapshot_notifications(
    events: Iterable[Any], version: int, *, availability_zone: str | None, host: str
) -> list[Notification]:
    """The notifications of the snapshot event at ``version`` (none for most events);
    ``availability_zone``: the zone of a snapshot that does not record its own."""
    snapshot: Any = None
    before: dict[str, Any] | None = None
    for event in events:
        if event.originator_version > version:
            break
        if event.originator_version == version:
            if snapshot is not None:
                before = snapshot_payload(snapshot, availability_zone=availability_zone)
            snapshot = event.mutate(snapshot)
            return snapshot_step_notifications(
                before, snapshot, event, availability_zone=availability_zone, host=host
            )
        snapshot = event.mutate(snapshot)
    return []
