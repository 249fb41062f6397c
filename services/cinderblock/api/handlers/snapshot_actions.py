"""`POST /snapshots/{snapshot_id}/action`: the admin actions Cinder serves on a snapshot —
``os-reset_status`` (set any of Cinder's snapshot statuses) and ``os-force_delete``
(delete whatever the status). Both 202 with an empty body; each is one event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from cinderblock.api.body import json_body
from cinderblock.api.deps import deps
from cinderblock.api.middleware import RAW_REPLY, context
from cinderblock.domain.snapshot import Snapshot, SnapshotStatus
from cinderblock.wire.faults import BadRequest

RESET = "volume_extension:snapshot_admin_actions:reset_status"
FORCE_DELETE = "volume_extension:snapshot_admin_actions:force_delete"


def _reset_status(payload: Any) -> tuple[str, Callable[[Snapshot], None]]:
    """Cinder's schema: ``{"status": <one of its snapshot statuses, any case>}``, nothing
    else."""
    if not isinstance(payload, dict):
        raise BadRequest(f"Invalid input for field/attribute os-reset_status. Value: {payload}.")
    extra = sorted(set(payload) - {"status"})
    if extra:
        raise BadRequest(
            "Invalid input for field/attribute os-reset_status. Value: "
            f"{payload}. Additional properties are not allowed ('{extra[0]}' was unexpected)"
        )
    if "status" not in payload:
        raise BadRequest(
            "Invalid input for field/attribute os-reset_status. Value: "
            f"{payload}. 'status' is a required property"
        )
    status = payload["status"]
    if not isinstance(status, str):
        raise BadRequest(
            f"Invalid input for field/attribute status. Value: {status}. "
            f"{status!r} is not of type 'string'"
        )
    if status.lower() not in SnapshotStatus.ALL:
        raise BadRequest(
            f"Invalid input received: Snapshot status: {status} is invalid, valid statuses "
            f"are: {SnapshotStatus.ALL}."
        )
    lowered = status.lower()
    return RESET, lambda snapshot: snapshot.reset_status(lowered)


def _force_delete(payload: Any) -> tuple[str, Callable[[Snapshot], None]]:
    return FORCE_DELETE, Snapshot.force_delete


ACTIONS = {"os-reset_status": _reset_status, "os-force_delete": _force_delete}


async def action(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    snapshot_id = request.match_info["snapshot_id"]
    body = await json_body(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest("Malformed request body")
    key, payload = next(iter(body.items()))
    parse = ACTIONS.get(key)
    if parse is None:
        raise BadRequest(f"There is no such action: {key}")
    rule, change = parse(payload)

    def authorize(snapshot: Snapshot) -> None:
        d.policy.authorize(rule, ctx.credentials, {"project_id": snapshot.project_id})

    at, _ = await d.volumes.snapshot_act(
        ctx.caller,
        snapshot_id,
        change,
        meta=ctx.meta(f"snapshot:{key}"),
        authorize=authorize,
    )
    await d.read_your_write(at)
    request[RAW_REPLY] = True
    return web.Response(status=202)


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_post(f"{prefix}/snapshots/{{snapshot_id}}/action", action)
