"""CADF records (as keystonemiddleware's audit filter builds them, ecosystem §5.2) from the
event log: one record per API request (its request id), built from the events the request
appended and the ``meta`` stored beside them.

Only accepted requests append events, so every record's outcome is ``success`` with the
HTTP status Cinderblock answers that call with; refused requests are in the API's structured
log (request id, user, project, action, fault), not in the event log. What the request set
off asynchronously (a saga's completion or compensation, same request id) is attached as
a separate fact (``attachments`` → ``async_outcome``), never folded into the outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from cinderblock.audit.log import LoggedEvent

CADF_EVENT = "http://schemas.dmtf.org/cloud/audit/1.0/event"
USER = "service/security/account/user"
SERVICE = "service/storage/block"
# pycadf's cinder_api_audit_map: path keyword → resource; the target of a request is the
# first aggregate it changed (quota bookkeeping rides along with volume requests).
TARGETS = {
    "Volume": "volumes/volume",
    "Snapshot": "snapshots/snapshot",
    "VolumeType": "types/type",
    "TypeNameClaim": "types/type",
    "ProjectQuota": "os-quota-sets/quota-set",
}
_NAMESPACE = uuid.UUID("6b5a9c7e-2f43-4c1e-9a57-3c0de1b1c0c4")
# Calls Cinderblock answers with something other than 202 (the default of actions, creates
# and deletes); PUT answers 200.
_STATUS = {
    "os-set_bootable": 200,
    "os-set_image_metadata": 200,
    "os-unset_image_metadata": 200,
    "attachment:create": 200,
    "attachment:update": 200,
    "attachment:delete": 200,
    "attachment:complete": 204,
    "type:create": 200,
    "type:extra_specs": 200,
    "quota:update": 200,
    "quota:delete": 200,
    "os-migrate_volume_completion": 200,
}
# Action keys whose meta names the policy rule rather than the body key.
_ACTION_KEYS = {"attachment:complete": "os-complete"}


def cadf_time(when: datetime) -> str:
    """pycadf's format: ``%Y-%m-%dT%H:%M:%S.%f%z`` (``+0000``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f%z")


def cadf_action(meta: dict[str, Any]) -> str:
    """keystonemiddleware's action: ``update/<body key>`` for ``POST …/action``, else by
    method (POST create, PUT/PATCH update, DELETE delete)."""
    action = str(meta.get("action") or "")
    method, path = meta.get("http_method"), str(meta.get("request_path") or "")
    if method is None:  # recorded before the method was stored: judge by the action name
        if action.startswith("os-") or action == "revert":
            return f"update/{action}"
        verb = action.rpartition(":")[2]
        for known in ("create", "delete"):
            if verb.startswith(known):
                return known
        return "update"
    if method == "POST" and path.endswith("/action"):
        return f"update/{_ACTION_KEYS.get(action, action)}"
    return {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}.get(
        str(method), "read"
    )


def success_status(meta: dict[str, Any]) -> int:
    """The HTTP status Cinderblock answered the (accepted) request with."""
    action, method = str(meta.get("action") or ""), meta.get("http_method")
    if action.endswith("_metadata") and not action.startswith("os-"):
        return 200  # the metadata endpoints of volumes and snapshots
    if (action, method) == ("type:extra_specs", "DELETE"):
        return 202
    if action in _STATUS:
        return _STATUS[action]
    return 200 if meta.get("http_method") in ("PUT", "PATCH") else 202


def _target(events: Sequence[LoggedEvent]) -> LoggedEvent:
    for logged in events:
        if logged.kind != "ProjectQuota":
            return logged
    return events[0]


def record(api_events: Sequence[LoggedEvent], later: Sequence[LoggedEvent]) -> dict[str, Any]:
    """The CADF record of one request: ``api_events`` it appended (log order), ``later``
    the saga events that carry its request id."""
    first, meta = api_events[0], api_events[0].meta
    target = _target(api_events)
    status = success_status(meta)
    request_id = str(meta["request_id"])
    initiator: dict[str, Any] = {
        "typeURI": USER,
        "id": meta.get("user_id"),
        "project_id": meta.get("project_id"),
        "host": {"address": meta.get("remote_addr")},
        "roles": meta.get("roles"),
        "is_admin": meta.get("is_admin"),
        "request_id": request_id,
        "global_request_id": meta.get("global_request_id"),
    }
    events = [f"{e.name}@{e.aggregate_id}:{e.version}" for e in api_events]
    attachments = [
        {"typeURI": "mime:application/json", "name": "events", "content": events},
        {
            "typeURI": "mime:application/json",
            "name": "microversion",
            "content": meta.get("microversion"),
        },
    ]
    if later:
        attachments.append(
            {
                "typeURI": "mime:application/json",
                "name": "async_outcome",
                "content": [
                    {
                        "event": e.name,
                        "actor": e.meta.get("actor"),
                        "causation_id": e.meta.get("causation_id"),
                        "time": cadf_time(e.timestamp),
                    }
                    for e in later
                ],
            }
        )
    body: dict[str, Any] = {
        "typeURI": CADF_EVENT,
        "id": str(uuid.uuid5(_NAMESPACE, request_id)),
        "eventType": "activity",
        "eventTime": cadf_time(first.recorded_at),
        "action": cadf_action(meta),
        "outcome": "success",
        "reason": {"reasonType": "HTTP", "reasonCode": str(status)},
        "initiator": initiator,
        "target": {
            "typeURI": f"{SERVICE}/{TARGETS.get(target.kind, 'volumes/volume')}",
            "id": str(target.aggregate_id),
        },
        "observer": {"id": "target", "name": "cinderblock"},
        "requestPath": meta.get("request_path"),
        "tags": [f"correlation_id?value={meta.get('global_request_id') or request_id}"],
        "attachments": attachments,
    }
    return body


def records(
    events: Iterable[LoggedEvent], *, project_id: str | None = None
) -> list[dict[str, Any]]:
    """One record per request id with API events (in order of their first event);
    ``project_id`` keeps the requests made by that project (the initiator's)."""
    api: dict[str, list[LoggedEvent]] = {}
    later: dict[str, list[LoggedEvent]] = {}
    for logged in events:
        request_id = logged.meta.get("request_id")
        if not request_id:
            continue
        if logged.from_api:
            if project_id is None or logged.meta.get("project_id") == project_id:
                api.setdefault(request_id, []).append(logged)
        else:
            later.setdefault(request_id, []).append(logged)
    return [record(found, later.get(rid, [])) for rid, found in api.items()]
