"""CADF records of API requests, as keystonemiddleware's audit filter builds them
(ecosystem §5.2): one record per request (its request id), built here and only here.

Every request the API answers under /v3 is kept in the API's request log
(``cinderblock.audit.requests``: status, identity, path and route, the fault of a refusal);
an accepted request's events add its target (the aggregate it changed) and the events
themselves. The outcome is keystonemiddleware's for the HTTP answer: ``success`` for 2xx and
3xx, ``failure`` for a refusal (400, 403, 404, 409, 413…), with the status as ``reasonCode``.
What an accepted request set off asynchronously (a saga's completion or compensation, same
request id) is attached as a separate fact (``attachments`` → ``async_outcome``), never
folded into the outcome. Requests from before the request log are rebuilt from their
events' ``meta`` alone (success, with the status Cinderblock answers that call with).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cinderblock.audit.log import LoggedEvent
from cinderblock.audit.reasons import why
from cinderblock.wire.storable import storable

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
# keystonemiddleware's path keywords for Cinder (pycadf's cinder_api_audit_map): a keyword,
# and the singular of the id that follows it, make the target's type.
PATH_KEYWORDS = {
    "volumes": "volume",
    "snapshots": "snapshot",
    "types": "type",
    "attachments": "attachment",
    "os-quota-sets": "quota-set",
    "extra_specs": "extra_spec",
    "metadata": "key",
    "encryption": "encryption",
    "os-volume-type-access": "access",
}
UNKNOWN = "unknown"  # pycadf's taxonomy.UNKNOWN
JSON = "mime:application/json"
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


def cadf_action(meta: Mapping[str, Any]) -> str:
    """keystonemiddleware's action: ``update/<body key>`` for ``POST …/action``; else by
    method: POST create, PUT/PATCH update, DELETE delete, GET list on a collection (a route
    ending in a name, not an id) and read otherwise, HEAD read."""
    action = str(meta.get("action") or "")
    method, route = meta.get("http_method"), str(meta.get("route") or "")
    path = route or str(meta.get("request_path") or "").partition("?")[0]
    if method is None:  # recorded before the method was stored: judge by the action name
        if action.startswith("os-") or action == "revert":
            return f"update/{action}"
        verb = action.rpartition(":")[2]
        for known in ("create", "delete"):
            if verb.startswith(known):
                return known
        return "update"
    if method == "POST" and path.endswith("/action"):
        key = _ACTION_KEYS.get(action, action)
        return f"update/{key}" if key else "create"
    if method == "GET":
        return "list" if route and not route.rstrip("/").endswith("}") else "read"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "update",
        "DELETE": "delete",
        "HEAD": "read",
    }.get(str(method), UNKNOWN)


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


@dataclass(frozen=True)
class RequestFacts:
    """What an audit record says of one request, whoever kept it: the API's request log
    (``cinderblock.audit.requests``: every request, refused or read ones too) or, for a
    request from before that log, the ``meta`` of the events it appended."""

    request_id: str
    at: datetime
    status: int
    method: str | None = None
    path: str | None = None  # as requested, with the query
    route: str | None = None  # its template: /v3/{project_id}/volumes/{volume_id}
    action: str | None = None  # the body key of POST …/action, or the policy rule
    fault: str | None = None  # the message of a refusal
    user_id: str | None = None
    project_id: str | None = None
    roles: list[str] | None = None
    is_admin: bool | None = None
    remote_addr: str | None = None
    global_request_id: str | None = None
    microversion: str | None = None
    target_id: str | None = None  # the id of the resource the path names
    duration_ms: float | None = None

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], at: datetime) -> RequestFacts:
        """The facts an accepted request stored beside its events (``RequestContext.meta``);
        its status is the one Cinderblock answers that call with."""
        return cls(
            request_id=str(meta["request_id"]),
            at=at,
            status=success_status(dict(meta)),
            method=meta.get("http_method"),
            path=meta.get("request_path"),
            action=meta.get("action"),
            user_id=meta.get("user_id"),
            project_id=meta.get("project_id"),
            roles=meta.get("roles"),
            is_admin=meta.get("is_admin"),
            remote_addr=meta.get("remote_addr"),
            global_request_id=meta.get("global_request_id"),
            microversion=meta.get("microversion"),
        )

    def to_json(self) -> dict[str, Any]:
        """The facts as stored: text the stores cannot hold (a refused request's path with
        U+0000, say) kept in its JSON-escaped form."""
        # A shallow walk (the one list is of strings): dataclasses.asdict deep-copies, and
        # this runs once per request (it was ~4 % of a GET's time in the api process).
        found = {
            name: _keepable(value)
            for name in self.__dataclass_fields__
            if (value := getattr(self, name)) is not None
        }
        found["at"] = self.at.isoformat()
        return found

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestFacts:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["at"] = datetime.fromisoformat(str(data["at"]))
        return cls(**known)

    def as_meta(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "http_method": self.method,
            "request_path": self.path,
            "route": self.route,
        }


def _keepable(value: Any) -> Any:
    if isinstance(value, str) and not storable(value):
        return json.dumps(value)[1:-1]  # \u0000, \ud800: ASCII, storable
    if isinstance(value, list):
        return [_keepable(v) for v in value]
    return value


def outcome(status: int) -> str:
    """keystonemiddleware's outcome of an answered request: success for 2xx and 3xx,
    failure otherwise."""
    return "success" if 200 <= status < 400 else "failure"


def _target(events: Sequence[LoggedEvent]) -> LoggedEvent:
    for logged in events:
        if logged.kind != "ProjectQuota":
            return logged
    return events[0]


def _path_type(route: str | None) -> str:
    """keystonemiddleware's target type from the path keywords: each keyword, and after a
    keyword followed by an id its singular (``volumes/volume``)."""
    kinds: list[str] = []
    previous = ""
    for part in (route or "").strip("/").split("/"):
        if part in PATH_KEYWORDS:
            kinds.append(part)
        elif part.startswith("{") and previous in PATH_KEYWORDS:
            kinds.append(PATH_KEYWORDS[previous])
        previous = part
    return "/".join([SERVICE, *kinds])


def record(
    facts: RequestFacts,
    api_events: Sequence[LoggedEvent] = (),
    later: Sequence[LoggedEvent] = (),
) -> dict[str, Any]:
    """The CADF record of one request: ``facts`` of the request, ``api_events`` it appended
    (log order; none for a read or a refusal), ``later`` the saga events that carry its
    request id (an accepted asynchronous action's own outcome, kept apart from the HTTP one)."""
    request_id = facts.request_id
    initiator: dict[str, Any] = {
        "typeURI": USER,
        "id": facts.user_id or UNKNOWN,
        "project_id": facts.project_id or UNKNOWN,
        "host": {"address": facts.remote_addr},
        "roles": facts.roles,
        "is_admin": facts.is_admin,
        "request_id": request_id,
        "global_request_id": facts.global_request_id,
    }
    if api_events:
        found = _target(api_events)
        target = {
            "typeURI": f"{SERVICE}/{TARGETS.get(found.kind, 'volumes/volume')}",
            "id": str(found.aggregate_id),
        }
    else:
        target = {"typeURI": _path_type(facts.route), "id": facts.target_id or UNKNOWN}
    attachments: list[dict[str, Any]] = []
    if api_events:
        events = [f"{e.name}@{e.aggregate_id}:{e.version}" for e in api_events]
        attachments.append({"typeURI": JSON, "name": "events", "content": events})
    attachments.append({"typeURI": JSON, "name": "microversion", "content": facts.microversion})
    if facts.fault is not None:
        attachments.append({"typeURI": JSON, "name": "fault", "content": facts.fault})
    if later:
        attachments.append(
            {
                "typeURI": JSON,
                "name": "async_outcome",
                "content": [
                    {
                        "event": e.name,
                        "actor": e.meta.get("actor"),
                        "causation_id": e.meta.get("causation_id"),
                        "time": cadf_time(e.timestamp),
                        **why(e),  # a failure's reason and the user message it left
                    }
                    for e in later
                ],
            }
        )
    body: dict[str, Any] = {
        "typeURI": CADF_EVENT,
        "id": str(uuid.uuid5(_NAMESPACE, request_id)),
        "eventType": "activity",
        "eventTime": cadf_time(facts.at),
        "action": cadf_action(facts.as_meta()),
        "outcome": outcome(facts.status),
        "reason": {"reasonType": "HTTP", "reasonCode": str(facts.status)},
        "initiator": initiator,
        "target": target,
        "observer": {"id": "target", "name": "cinderblock"},
        "requestPath": facts.path,
        "tags": [f"correlation_id?value={facts.global_request_id or request_id}"],
        "attachments": attachments,
    }
    if facts.duration_ms is not None:
        answered = facts.at + timedelta(milliseconds=facts.duration_ms)
        body["reporterchain"] = [
            {"role": "modifier", "reporter": {"id": "target"}, "reporterTime": cadf_time(answered)}
        ]
    return body


def records(
    events: Iterable[LoggedEvent],
    *,
    project_id: str | None = None,
    requests: Iterable[RequestFacts] = (),
) -> list[dict[str, Any]]:
    """One record per request, in time order: every request of ``requests`` (the API's
    request log), and every request id with API events that log does not have (older
    requests); ``project_id`` keeps the requests made by that project (the initiator's)."""
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
    facts: dict[str, RequestFacts] = {}
    for f in requests:
        if project_id is None or f.project_id == project_id:
            facts[f.request_id] = f
    for rid, found in api.items():
        meta = found[0].meta
        if rid in facts:  # the policy rule names the action where the body key is not known
            if facts[rid].action is None:
                facts[rid] = replace(facts[rid], action=meta.get("action"))
        else:
            facts[rid] = RequestFacts.from_meta(meta, found[0].recorded_at)
    ordered = sorted(facts.values(), key=lambda f: f.at)
    return [record(f, api.get(f.request_id, []), later.get(f.request_id, [])) for f in ordered]
