"""Why: the reason a failure or a refusal records, and the user message a failure leaves
(the one ``GET /messages`` shows, from the same rule the read model uses), for `history`
and `audit`. Operators see the reason as recorded; users see only the message."""

from __future__ import annotations

from typing import Any

from cinderblock.audit.log import LoggedEvent
from cinderblock.readmodels.messages import message_id, user_message_of
from cinderblock.store.mapping import event_data
from cinderblock.wire.user_messages import user_message


def failure_reason(logged: LoggedEvent) -> str | None:
    """The reason an event of a volume or snapshot records: a failed step, a refused retype,
    what Nova answered (None for every other event)."""
    if logged.kind not in ("Volume", "Snapshot"):
        return None  # a quota adjustment's ``reason`` says what it is for, not why it failed
    reason = getattr(logged.event, "reason", None)
    return str(reason) if reason else None


def message_of(logged: LoggedEvent) -> dict[str, str] | None:
    """The user message the event records, as the messages API shows it (id, event_id,
    user_message), or None."""
    found = user_message_of(logged.name, event_data(logged.event))
    if found is None:
        return None
    return {
        "id": str(message_id(logged.aggregate_id, logged.version)),
        "event_id": found.event_id,
        "user_message": user_message(found.action_id, found.detail_id),
    }


def why(logged: LoggedEvent) -> dict[str, Any]:
    """``reason`` and ``user_message`` of an event, only those it has."""
    found: dict[str, Any] = {}
    reason = failure_reason(logged)
    if reason is not None:
        found["reason"] = reason
    message = message_of(logged)
    if message is not None:
        found["user_message"] = message
    return found
