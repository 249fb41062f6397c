"""Why: the reason a failure or a refusal records, and the user message a failure leaves
(the one ``GET /messages`` shows, from the same rule the read model uses), for `history`
and `audit`. Operators see the reason as recorded; users see only the message."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

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


@dataclass(frozen=True)
class Refusal:
    """A request the API refused about a resource, as its request log kept it."""

    at: datetime
    request_id: str
    target_id: str
    status: int
    method: str | None
    action: str | None
    route: str | None
    fault: str | None
    user_id: str | None
    project_id: str | None

    @property
    def what(self) -> str:
        """``os-extend``, or the method and route when no action was named."""
        return self.action or f"{self.method or '?'} {self.route or '?'}"


_REQUEST_LOG = "api_requests"  # cinderblock.audit.requests' table, when the API keeps one
_REFUSED = f"""
SELECT facts::text AS facts FROM {_REQUEST_LOG}
WHERE facts->>'target_id' = ANY($1::text[]) AND (facts->>'status')::int >= 400
ORDER BY at
"""


async def refusals(conn: asyncpg.Connection, target_ids: Sequence[str]) -> list[Refusal]:
    """The refused requests about ``target_ids`` (a volume and its snapshots) that the API's
    request log kept, oldest first; none where there is no such log."""
    if not target_ids or not await conn.fetchval(
        f"SELECT to_regclass('{_REQUEST_LOG}') IS NOT NULL"
    ):
        return []
    found = []
    for r in await conn.fetch(_REFUSED, list(target_ids)):
        facts = json.loads(r["facts"])
        found.append(
            Refusal(
                at=datetime.fromisoformat(str(facts["at"])),
                request_id=str(facts["request_id"]),
                target_id=str(facts["target_id"]),
                status=int(facts["status"]),
                method=facts.get("method"),
                action=facts.get("action"),
                route=facts.get("route"),
                fault=facts.get("fault"),
                user_id=facts.get("user_id"),
                project_id=facts.get("project_id"),
            )
        )
    return found
