"""Attachment-bookkeeping and admin actions: one small function each (spec §3.2, §3.4 to
3.10, §3.14, §3.17 to 3.23). Parsing happened in wire; here: policy → command → reply."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps
from cinderblock.domain.errors import MetadataNotFoundError
from cinderblock.domain.volume import Volume
from cinderblock.drivers.file import local_connection_info
from cinderblock.readmodels.queries import get_volume
from cinderblock.wire import bookkeeping as body
from cinderblock.wire.faults import volume_not_found

T = TypeVar("T")
ADMIN_ACTIONS = "volume_extension:volume_admin_actions"
VOLUME_ACTIONS = "volume_extension:volume_actions"


async def act(
    d: Deps,
    ctx: RequestContext,
    volume_id: str,
    action: str,
    rules: Sequence[str],
    change: Callable[[Volume], T],
    *,
    pulls_attachment: bool = False,
    attachment_id: str | None = None,
) -> T:
    """Authorize ``rules`` against the volume's project, apply ``change``, and wait until
    the read models show it. ``pulls_attachment``: the request takes ``attachment_id``
    (None: the only one) from its instance, so Nova is asked first when one is configured."""

    def authorize(volume: Volume) -> None:
        for rule in rules:
            d.policy.authorize(rule, ctx.credentials, {"project_id": volume.project_id})

    if pulls_attachment:
        await d.nova_allows(ctx, volume_id, attachment_id, authorize)
    at, result = await d.volumes.act(
        ctx.caller, volume_id, change, meta=ctx.meta(action), authorize=authorize
    )
    await d.read_your_write(at)
    return result


def _accepted() -> web.Response:
    return web.Response(status=202)


def _plain(action: str, rule: str, change: Callable[[Volume], object]) -> Callable[..., Any]:
    """An action whose payload Cinder ignores: policy, the aggregate's verb, 202."""

    async def handler(d: Deps, ctx: RequestContext, vid: str, _: object) -> web.Response:
        await act(d, ctx, vid, action, [f"{VOLUME_ACTIONS}:{rule}"], change)
        return _accepted()

    handler.__name__ = rule
    return handler


reserve = _plain("os-reserve", "reserve", Volume.reserve)
unreserve = _plain("os-unreserve", "unreserve", Volume.unreserve)
begin_detaching = _plain("os-begin_detaching", "begin_detaching", Volume.begin_detaching)
roll_detaching = _plain("os-roll_detaching", "roll_detaching", Volume.roll_detaching)


async def attach(d: Deps, ctx: RequestContext, vid: str, req: body.Attach) -> web.Response:
    attachment_id = str(uuid.uuid4())
    await act(
        d,
        ctx,
        vid,
        "os-attach",
        [f"{VOLUME_ACTIONS}:attach"],
        lambda v: v.attach(
            attachment_id,
            mountpoint=req.mountpoint or "",
            mode=req.mode,
            instance_uuid=req.instance_uuid,
            host_name=req.host_name,
        ),
    )
    return _accepted()


async def detach(d: Deps, ctx: RequestContext, vid: str, req: body.Detach) -> web.Response:
    service = ctx.is_service
    await act(
        d,
        ctx,
        vid,
        "os-detach",
        [f"{VOLUME_ACTIONS}:detach"],
        lambda v: v.detach(req.attachment_id, service=service),
        pulls_attachment=True,
        attachment_id=req.attachment_id,
    )
    return _accepted()


async def force_detach(
    d: Deps, ctx: RequestContext, vid: str, req: body.ForceDetach
) -> web.Response:
    rules = [
        f"{ADMIN_ACTIONS}:force_detach",
        f"{VOLUME_ACTIONS}:terminate_connection",
        f"{VOLUME_ACTIONS}:detach",
    ]
    service = ctx.is_service
    await act(
        d,
        ctx,
        vid,
        "os-force_detach",
        rules,
        lambda v: v.force_detach(req.attachment_id, service=service),
        pulls_attachment=True,
        attachment_id=req.attachment_id,
    )
    return _accepted()


async def terminate_connection(
    d: Deps, ctx: RequestContext, vid: str, _: body.TerminateConnection
) -> web.Response:
    service = ctx.is_service
    await act(
        d,
        ctx,
        vid,
        "os-terminate_connection",
        [f"{VOLUME_ACTIONS}:terminate_connection"],
        lambda v: v.terminate_connection(service=service),
        pulls_attachment=True,
    )
    return _accepted()


async def initialize_connection(
    d: Deps, ctx: RequestContext, vid: str, req: body.InitializeConnection
) -> web.Response:
    """200 with the connection info; no state changes, nothing appended."""

    def connect(volume: Volume) -> dict[str, Any]:
        volume.check_connectable()
        if volume.host is None:
            raise volume_not_found(vid)
        root = Path(d.settings.data_dir) / "volumes"
        return local_connection_info(
            root,
            volume.host,
            volume.vid,
            access_mode=volume.access_mode(),
            connector=req.connector,
            encrypted=volume.encrypted,
        )

    info = await act(
        d,
        ctx,
        vid,
        "os-initialize_connection",
        [f"{VOLUME_ACTIONS}:initialize_connection"],
        connect,
    )
    return web.json_response({"connection_info": info})


async def update_readonly_flag(
    d: Deps, ctx: RequestContext, vid: str, req: body.UpdateReadonlyFlag
) -> web.Response:
    await act(
        d,
        ctx,
        vid,
        "os-update_readonly_flag",
        ["volume:update_readonly_flag"],
        lambda v: v.update_readonly_flag(req.readonly),
    )
    return _accepted()


async def reset_status(
    d: Deps, ctx: RequestContext, vid: str, req: body.ResetStatus
) -> web.Response:
    await act(
        d,
        ctx,
        vid,
        "os-reset_status",
        [f"{ADMIN_ACTIONS}:reset_status"],
        lambda v: v.reset_status(
            status=req.status,
            attach_status=req.attach_status,
            migration_status=req.migration_value,
            migration_given=req.migration_given,
        ),
    )
    return _accepted()


async def set_image_metadata(
    d: Deps, ctx: RequestContext, vid: str, req: body.SetImageMetadata
) -> web.Response:
    rules = ["volume_extension:volume_image_metadata:set", "volume:update_volume_metadata"]
    merged = await act(
        d, ctx, vid, "os-set_image_metadata", rules, lambda v: v.set_image_metadata(req.metadata)
    )
    return web.json_response({"metadata": merged})


async def unset_image_metadata(
    d: Deps, ctx: RequestContext, vid: str, req: body.UnsetImageMetadata
) -> web.Response:
    rules = [
        "volume_extension:volume_image_metadata:remove",
        "volume:get_volume_metadata",
        "volume:delete_volume_metadata",
    ]
    await act(
        d, ctx, vid, "os-unset_image_metadata", rules, lambda v: v.unset_image_metadata(req.key)
    )
    return web.Response(status=200)


async def show_image_metadata(
    d: Deps, ctx: RequestContext, vid: str, _: body.ShowImageMetadata
) -> web.Response:
    """A read: answered from the read model."""
    row = await get_volume(d.pool, vid, project_id=None if ctx.is_admin else ctx.project_id)
    if row is None:
        raise volume_not_found(vid)
    d.policy.authorize(
        "volume:get_volume_metadata", ctx.credentials, {"project_id": row["project_id"]}
    )
    if not row["image_metadata"]:
        raise MetadataNotFoundError(vid)
    return web.json_response({"metadata": row["image_metadata"]})


async def force_delete(d: Deps, ctx: RequestContext, vid: str, _: body.ForceDelete) -> web.Response:
    def authorize(volume: Volume) -> None:
        target = {"project_id": volume.project_id}
        d.policy.authorize(f"{ADMIN_ACTIONS}:force_delete", ctx.credentials, target)
        d.policy.authorize("volume:delete", ctx.credentials, target)

    at = await d.volumes.delete_volume(
        ctx.caller, vid, meta=ctx.meta("os-force_delete"), force=True, authorize=authorize
    )
    await d.read_your_write(at)
    return _accepted()


async def unmanage(d: Deps, ctx: RequestContext, vid: str, _: body.Unmanage) -> web.Response:
    def authorize(volume: Volume) -> None:
        target = {"project_id": volume.project_id}
        d.policy.authorize("volume_extension:volume_unmanage", ctx.credentials, target)
        d.policy.authorize("volume:delete", ctx.credentials, target)

    at = await d.volumes.unmanage_volume(
        ctx.caller, vid, meta=ctx.meta("os-unmanage"), authorize=authorize
    )
    await d.read_your_write(at)
    return _accepted()


BOOKKEEPING_ACTIONS: dict[str, Callable[..., Any]] = {
    "os-unmanage": unmanage,
    "os-reserve": reserve,
    "os-unreserve": unreserve,
    "os-begin_detaching": begin_detaching,
    "os-roll_detaching": roll_detaching,
    "os-attach": attach,
    "os-detach": detach,
    "os-force_detach": force_detach,
    "os-terminate_connection": terminate_connection,
    "os-initialize_connection": initialize_connection,
    "os-update_readonly_flag": update_readonly_flag,
    "os-reset_status": reset_status,
    "os-set_image_metadata": set_image_metadata,
    "os-unset_image_metadata": unset_image_metadata,
    "os-show_image_metadata": show_image_metadata,
    "os-force_delete": force_delete,
}
