"""User messages (Cinder's messages API) as a read model: every failed asynchronous step
recorded in the log becomes one row of ``messages``, built as Cinder's message api builds
one (a Resource, an Action and a Detail of ``wire.user_messages``; no free text), and a
``MessageDeleted`` event of the same aggregate marks it deleted.

Which failure gives which message is decided here, once, from the event alone
(``user_message_of``): the live projector, replay and ``cinderblock history`` all ask this.
Our failure events record their reason as text, so the Detail comes from the event's
structured fields where it has them (an extend's status, Nova's outcome) and otherwise
from the few reasons the sagas state in Cinder's own words (``No valid backend was found``,
the driver's capacity shortage, the retype refusals); anything else is Cinder's
``UNKNOWN_ERROR`` or the action's own driver failure.

Every row is changed by the events of one aggregate only, the resource the message is
about (``resource_uuid``): its id is derived from that aggregate's id and the version of
the failure event, so a replay makes the same ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

from cinderblock.readmodels.event import ProjectionEvent
from cinderblock.readmodels.folds import Row, Step, insert, touch
from cinderblock.wire.user_messages import (
    LEVEL_ERROR,
    MESSAGE_TTL,
    Action,
    Detail,
    Field,
    Resource,
    event_id,
)

M = "messages"
# Message ids: uuid5 of ``<aggregate id>:<version of the failure event>``.
MESSAGE_NAMESPACE = UUID("0f4b9d7e-4c1a-5b7e-9d55-6c2f7a1e3b90")

# Reasons that say what Cinder's scheduler says with NoValidBackend: no backend (or no
# pool) has room for, or suits, the volume. The first is how every saga words a
# scheduler-style refusal; the others are the file driver's CapacityError reasons.
NO_BACKEND_MARKERS = (
    "No valid backend was found",
    " GiB free",
    "capacity shortage",
    "migration policy is 'never'",
)
# Retype refusals about the volume's own state (its snapshots, an attached guest).
INVALID_STATE_MARKERS = ("has snapshots", "needs the volume detached")


@dataclass(frozen=True)
class UserMessage:
    """What a failure event tells the user: Cinder's fields, no text of ours."""

    resource_type: str
    action: Field
    detail: Field

    @property
    def event_id(self) -> str:
        return event_id(self.resource_type, self.action, self.detail)

    @property
    def action_id(self) -> str:
        return self.action[0]

    @property
    def detail_id(self) -> str:
        return self.detail[0]


def _volume(action: Field, detail: Field) -> UserMessage:
    return UserMessage(Resource.VOLUME, action, detail)


def _reason(d: Mapping[str, Any]) -> str:
    return str(d.get("reason") or "")


def _no_backend(d: Mapping[str, Any]) -> bool:
    reason = _reason(d)
    return any(marker in reason for marker in NO_BACKEND_MARKERS)


def _or_unknown(d: Mapping[str, Any]) -> Field:
    return Detail.NO_BACKEND_AVAILABLE if _no_backend(d) else Detail.UNKNOWN_ERROR


def _create(d: Mapping[str, Any]) -> UserMessage:
    """Cinder: the scheduler's NoValidBackend, else the driver's failed create."""
    if _no_backend(d):
        return _volume(Action.SCHEDULE_ALLOCATE_VOLUME, Detail.NO_BACKEND_AVAILABLE)
    return _volume(Action.CREATE_VOLUME_FROM_BACKEND, Detail.DRIVER_FAILED_CREATE)


def _extend(d: Mapping[str, Any]) -> UserMessage:
    """A capacity shortage hands the volume back its status (the scheduler's
    NoValidBackend); a driver failure leaves it ``error_extending``."""
    if d.get("status") == "error_extending":
        return _volume(Action.EXTEND_VOLUME, Detail.DRIVER_FAILED_EXTEND)
    return _volume(Action.EXTEND_VOLUME, Detail.NO_BACKEND_AVAILABLE)


def _retype(d: Mapping[str, Any]) -> UserMessage:
    reason = _reason(d)
    if any(marker in reason for marker in INVALID_STATE_MARKERS):
        return _volume(Action.RETYPE_VOLUME, Detail.VOLUME_INVALID_STATE)
    return _volume(Action.RETYPE_VOLUME, _or_unknown(d))


def _nova(action: Field, detail: Field) -> Callable[[Mapping[str, Any]], UserMessage | None]:
    """Only a notification Nova gave no usable answer to (Cinder's ``_send_events`` False)."""

    def rule(d: Mapping[str, Any]) -> UserMessage | None:
        return _volume(action, detail) if d.get("outcome") == "failed" else None

    return rule


def _fixed(message: UserMessage) -> Callable[[Mapping[str, Any]], UserMessage]:
    return lambda _d: message


Rule = Callable[[Mapping[str, Any]], UserMessage | None]

RULES: dict[str, Rule] = {
    "Volume.CreateFailed": _create,
    "Volume.ExtendFailed": _extend,
    "Volume.NovaNotified": _nova(Action.EXTEND_VOLUME, Detail.NOTIFY_COMPUTE_SERVICE_FAILED),
    "Volume.NovaReimageNotified": _nova(Action.REIMAGE_VOLUME, Detail.REIMAGE_VOLUME_FAILED),
    "Volume.RetypeFailed": _retype,
    "Volume.MigrationFailed": lambda d: _volume(Action.MIGRATE_VOLUME, _or_unknown(d)),
    "Volume.DeleteFailed": _fixed(_volume(Action.DELETE_VOLUME, Detail.UNKNOWN_ERROR)),
    "Volume.UnmanageFailed": _fixed(_volume(Action.UNMANAGE_VOLUME, Detail.UNKNOWN_ERROR)),
    "Volume.UploadFailed": _fixed(
        _volume(Action.COPY_VOLUME_TO_IMAGE, Detail.FAILED_TO_UPLOAD_VOLUME)
    ),
    "Volume.ReimageFailed": _fixed(_volume(Action.REIMAGE_VOLUME, Detail.UNKNOWN_ERROR)),
    "Volume.RevertFailed": _fixed(_volume(Action.REVERT_VOLUME, Detail.UNKNOWN_ERROR)),
    "Volume.ExportFailed": _fixed(_volume(Action.ATTACH_VOLUME, Detail.ATTACH_ERROR)),
    "Volume.UnexportFailed": _fixed(_volume(Action.DETACH_VOLUME, Detail.DETACH_ERROR)),
    "Snapshot.CreateFailed": _fixed(
        UserMessage(Resource.VOLUME_SNAPSHOT, Action.SNAPSHOT_CREATE, Detail.SNAPSHOT_CREATE_ERROR)
    ),
    "Snapshot.DeleteFailed": _fixed(
        UserMessage(Resource.VOLUME_SNAPSHOT, Action.SNAPSHOT_DELETE, Detail.SNAPSHOT_DELETE_ERROR)
    ),
}
"""Every event that records a user message. ``Volume.ReencryptFailed`` records none: the
``RetypeFailed`` that always follows it does (one message per failed request)."""

DELETED_EVENTS = ("Volume.MessageDeleted", "Snapshot.MessageDeleted")


def user_message_of(name: str, data: Mapping[str, Any]) -> UserMessage | None:
    """The message event ``name`` with ``data`` records, if any."""
    rule = RULES.get(name)
    return rule(data) if rule is not None else None


def message_id(aggregate_id: UUID, version: int) -> UUID:
    """The id of the message the event at ``version`` of the aggregate records."""
    return uuid5(MESSAGE_NAMESPACE, f"{aggregate_id}:{version}")


def _recorded(e: ProjectionEvent) -> list[UUID]:
    return [message_id(e.aggregate_id, e.version)] if user_message_of(e.name, e.data) else []


def _fill(row: Row, e: ProjectionEvent) -> None:
    message = user_message_of(e.name, e.data)
    assert message is not None  # _recorded named no row otherwise
    row.update(
        project_id=e.request_project_id,
        request_id=e.request_id,
        resource_type=message.resource_type,
        resource_uuid=e.aggregate_id,
        event_id=message.event_id,
        action_id=message.action_id,
        detail_id=message.detail_id,
        message_level=LEVEL_ERROR,
        event_name=e.name,
        version=e.version,
        created_at=e.timestamp,
        expires_at=e.timestamp + MESSAGE_TTL,
    )


def _deleted_id(e: ProjectionEvent) -> list[UUID]:
    return [UUID(str(e.data["message_id"]))]


def _delete(row: Row, e: ProjectionEvent) -> None:
    if row["resource_uuid"] == e.aggregate_id:  # only the aggregate's own messages
        row["deleted"] = True
        row["deleted_at"] = e.timestamp


_RECORD = insert(M, _fill, _recorded)
_DELETE = touch(M, _deleted_id, _delete)

MESSAGE_STEPS: dict[str, tuple[Step, ...]] = {
    **{name: (_RECORD,) for name in RULES},
    **{name: (_DELETE,) for name in DELETED_EVENTS},
}
