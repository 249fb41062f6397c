"""The attachments API (3.27+): how Nova attaches today. Attachments live on their volume's
aggregate, shared with the legacy actions; this module finds the volume and acts on it."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from cinderblock.api import written
from cinderblock.api.body import json_body
from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps, deps
from cinderblock.api.middleware import context
from cinderblock.api.outcomes import saga_succeeded
from cinderblock.domain.volume import Volume
from cinderblock.readmodels.queries import ATTACHMENT_FILTERS, get_attachment, list_attachments
from cinderblock.store.eventstore import Position
from cinderblock.wire.attachments import (
    ATTACHMENTS_VERSION,
    COMPLETE_VERSION,
    AttachmentCreateRequest,
    attachment_detail,
    attachment_summary,
    parse_update,
)
from cinderblock.wire.faults import BadRequest, NotFound, resource_not_found

# Cinder's text of the VolumeBackendAPIException its manager raises when the export fails
# (_connection_create), inside the controller's "Unable to ... (%s)." (attachments.py).
EXPORT_FAILED = (
    "Bad or unexpected response from the storage volume backend API: "
    "Create export for volume failed ({reason})."
)


def _since(ctx: RequestContext, version: Any = ATTACHMENTS_VERSION) -> None:
    if not ctx.version.matches(version):
        raise resource_not_found()


def _scope(ctx: RequestContext) -> str | None:
    return None if ctx.is_admin else ctx.project_id


def _authorizer(d: Deps, ctx: RequestContext, rule: str) -> Any:
    def authorize(volume: Volume) -> None:
        d.policy.authorize(rule, ctx.credentials, {"project_id": volume.project_id})

    return authorize


async def _attachment(d: Deps, ctx: RequestContext, attachment_id: str) -> dict[str, Any]:
    row = await get_attachment(d.pool, attachment_id, project_id=_scope(ctx))
    if row is None:
        raise NotFound(f"VolumeAttachment {attachment_id} could not be found.")
    return row


def _export(
    volume: Volume, attachment_id: str, connector: dict[str, Any], *, reserved: bool
) -> int:
    if volume.host is None:
        raise BadRequest(f"Invalid volume: Volume {volume.vid} has no backend yet.")
    return volume.request_attachment_export(attachment_id, connector, reserved=reserved)


async def _exported(
    d: Deps, volume_id: str, at: Position, version: int, *, failed: str, no_answer: str
) -> Position:
    """Wait for the export saga's outcome; its position (for the reply's rows), or Cinder's
    500: ``failed`` holds the backend's reason, ``no_answer`` when the saga was too slow."""

    def failure(event: Any) -> str:
        return failed.format(EXPORT_FAILED.format(reason=event.reason))

    outcome = await saga_succeeded(d, volume_id, at, version, failure=failure, no_answer=no_answer)
    return outcome.at


async def _reply(
    d: Deps, ctx: RequestContext, at: Any, volume_id: str, attachment_id: str
) -> web.Response:
    async def read() -> list[dict[str, Any]]:
        row = await get_attachment(d.pool, attachment_id, project_id=_scope(ctx))
        return [] if row is None else [row]

    rows = await written.attachment_rows(d, at, volume_id, read)
    row = next((r for r in rows if r["id"] == attachment_id), None)
    if row is None:  # gone already: a concurrent delete
        raise NotFound(f"VolumeAttachment {attachment_id} could not be found.")
    return web.json_response({"attachment": attachment_detail(row)})


async def create(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _since(ctx)
    req = AttachmentCreateRequest.parse(await json_body(request), ctx.version)
    attachment_id = str(uuid.uuid4())

    def change(volume: Volume) -> int | None:
        volume.create_attachment(attachment_id, instance_uuid=req.instance_uuid, mode=req.mode)
        if req.connector:
            return _export(volume, attachment_id, req.connector, reserved=True)
        return None

    at, version = await d.volumes.act(
        ctx.caller,
        req.volume_uuid,
        change,
        meta=ctx.meta("attachment:create"),
        authorize=_authorizer(d, ctx, "volume:attachment_create"),
    )
    if version is not None:
        at = await _exported(
            d,
            req.volume_uuid,
            at,
            version,
            failed="Unable to create attachment for volume ({}).",
            no_answer="Unable to create attachment for volume.",
        )
    return await _reply(d, ctx, at, req.volume_uuid, attachment_id)


async def update(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _since(ctx)
    connector = parse_update(await json_body(request))
    attachment_id = request.match_info["attachment_id"]
    row = await _attachment(d, ctx, attachment_id)

    volume_id = str(row["volume_id"])
    at, version = await d.volumes.act(
        ctx.caller,
        volume_id,
        lambda v: _export(v, attachment_id, connector, reserved=False),
        meta=ctx.meta("attachment:update"),
        authorize=_authorizer(d, ctx, "volume:attachment_update"),
    )
    at = await _exported(
        d,
        volume_id,
        at,
        version,
        failed="Unable to update attachment ({}).",
        no_answer="Unable to update the attachment.",
    )
    return await _reply(d, ctx, at, volume_id, attachment_id)


async def action(request: web.Request) -> web.Response:
    """os-complete (3.44+) → 204."""
    d, ctx = deps(request), context(request)
    _since(ctx, COMPLETE_VERSION)
    body = await json_body(request)
    if not isinstance(body, dict) or list(body) != ["os-complete"]:
        raise BadRequest(
            f"There is no such action: {next(iter(body), None) if isinstance(body, dict) else None}"
        )
    attachment_id = request.match_info["attachment_id"]
    row = await _attachment(d, ctx, attachment_id)
    at, _ = await d.volumes.act(
        ctx.caller,
        row["volume_id"],
        lambda v: v.complete_attachment(attachment_id),
        meta=ctx.meta("attachment:complete"),
        authorize=_authorizer(d, ctx, "volume:attachment_complete"),
    )
    await d.read_your_write(at)
    return web.Response(status=204)


async def delete(request: web.Request) -> web.Response:
    """→ 200 with the volume's remaining attachments."""
    d, ctx = deps(request), context(request)
    _since(ctx)
    attachment_id = request.match_info["attachment_id"]
    row = await _attachment(d, ctx, attachment_id)
    authorize = _authorizer(d, ctx, "volume:attachment_delete")
    await d.nova_allows(ctx, str(row["volume_id"]), attachment_id, authorize)
    at, version = await d.volumes.act(
        ctx.caller,
        row["volume_id"],
        lambda v: v.request_attachment_delete(attachment_id),
        meta=ctx.meta("attachment:delete"),
        authorize=authorize,
    )
    if version is not None:  # the export is removed first (the export saga)
        # A failure is Cinder's VolumeBackendAPIException: its generic 500.
        at = (await saga_succeeded(d, str(row["volume_id"]), at, version)).at
    rest = await written.attachment_rows(
        d,
        at,
        row["volume_id"],
        lambda: list_attachments(
            d.pool, project_id=_scope(ctx), filters={"volume_id": row["volume_id"]}
        ),
    )
    return web.json_response({"attachments": [attachment_summary(r) for r in rest]})


async def show(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _since(ctx)
    row = await _attachment(d, ctx, request.match_info["attachment_id"])
    return web.json_response({"attachment": attachment_detail(row)})


async def _list(request: web.Request, *, detail: bool) -> web.Response:
    d, ctx = deps(request), context(request)
    _since(ctx)
    filters = {k: v for k, v in request.query.items() if k in ATTACHMENT_FILTERS}
    scope = None if ctx.is_admin and "all_tenants" in request.query else ctx.project_id
    rows = await list_attachments(d.pool, project_id=scope, filters=filters)
    view = attachment_detail if detail else attachment_summary
    return web.json_response({"attachments": [view(r) for r in rows]})


async def index(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_post(f"{prefix}/attachments", create)
    router.add_get(f"{prefix}/attachments", index, allow_head=False)
    router.add_get(f"{prefix}/attachments/detail", detail, allow_head=False)
    router.add_get(f"{prefix}/attachments/{{attachment_id}}", show, allow_head=False)
    router.add_put(f"{prefix}/attachments/{{attachment_id}}", update)
    router.add_delete(f"{prefix}/attachments/{{attachment_id}}", delete)
    router.add_post(f"{prefix}/attachments/{{attachment_id}}/action", action)
