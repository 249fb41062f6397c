"""Attachment-bookkeeping and admin actions: one small function each (spec §3.2, §3.4 to
3.10, §3.14, §3.17 to 3.23). Parsing happened in wire; here: policy → command → reply."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps
from cinderblock.api.outcomes import saga_succeeded
from cinderblock.domain import commands
from cinderblock.domain.commands import VolumeCommand
from cinderblock.domain.errors import MetadataNotFoundError
from cinderblock.domain.volume import Volume
from cinderblock.readmodels.queries import get_volume
from cinderblock.store.eventstore import Position
from cinderblock.wire import bookkeeping as body
from cinderblock.wire.faults import volume_not_found

T = TypeVar("T")
ADMIN_ACTIONS = "volume_extension:volume_admin_actions"
VOLUME_ACTIONS = "volume_extension:volume_actions"
# Cinder's answers when the volume service's export step fails (volume_actions.py,
# admin_actions.py); a detach whose export removal fails is its generic 500.
NO_CONNECTION = "Unable to fetch connection information from backend."
NO_TERMINATE = "Unable to terminate volume connection from backend."


async def act(
    d: Deps,
    ctx: RequestContext,
    volume_id: str,
    action: str,
    rules: Sequence[str],
    command: VolumeCommand[T],
    *,
    pulls_attachment: bool = False,
    attachment_id: str | None = None,
) -> T:
    """Authorize ``rules`` against the volume's project, run ``command``, and wait until
    the read models show it. ``pulls_attachment``: the request takes ``attachment_id``
    (None: the only one) from its instance, so Nova is asked first when one is configured."""

    at, result = await _append(
        d,
        ctx,
        volume_id,
        action,
        _authorizer(d, ctx, rules),
        command,
        pulls_attachment=pulls_attachment,
        attachment_id=attachment_id,
    )
    await d.read_your_write(at)
    return result


def _authorizer(d: Deps, ctx: RequestContext, rules: Sequence[str]) -> Callable[[Volume], None]:
    def authorize(volume: Volume) -> None:
        for rule in rules:
            d.policy.authorize(rule, ctx.credentials, {"project_id": volume.project_id})

    return authorize


async def _append(
    d: Deps,
    ctx: RequestContext,
    volume_id: str,
    action: str,
    authorize: Callable[[Volume], None],
    command: VolumeCommand[T],
    *,
    pulls_attachment: bool = False,
    attachment_id: str | None = None,
) -> tuple[Position, T]:
    if pulls_attachment:
        await d.nova_allows(ctx, volume_id, attachment_id, authorize)
    return await d.volumes.handle(
        ctx.caller, volume_id, command, meta=ctx.meta(action), authorize=authorize
    )


async def _driver_step(
    d: Deps,
    ctx: RequestContext,
    volume_id: str,
    action: str,
    rules: Sequence[str],
    command: VolumeCommand[int | None],
    *,
    failure: str | None = None,
    pulls_attachment: bool = False,
    attachment_id: str | None = None,
) -> None:
    """A detaching action: ``command`` records the bookkeeping at once (None), or hands the
    removal of exports to the export saga (the request's version): then the reply waits
    for the saga's outcome, as Cinder's API waits on its RPC call. A backend failure is
    Cinder's 500 (``failure``, else its generic text) and nothing was detached."""
    at, version = await _append(
        d,
        ctx,
        volume_id,
        action,
        _authorizer(d, ctx, rules),
        command,
        pulls_attachment=pulls_attachment,
        attachment_id=attachment_id,
    )
    if version is not None:
        at = (await saga_succeeded(d, volume_id, at, version, failure=lambda _e: failure)).at
    await d.read_your_write(at)


def _accepted() -> web.Response:
    return web.Response(status=202)


def _plain(action: str, rule: str, command: VolumeCommand[None]) -> Callable[..., Any]:
    """An action whose payload Cinder ignores: policy, the command, 202."""

    async def handler(d: Deps, ctx: RequestContext, vid: str, _: object) -> web.Response:
        await act(d, ctx, vid, action, [f"{VOLUME_ACTIONS}:{rule}"], command)
        return _accepted()

    handler.__name__ = rule
    return handler


reserve = _plain("os-reserve", "reserve", commands.Reserve())
unreserve = _plain("os-unreserve", "unreserve", commands.Unreserve())
begin_detaching = _plain("os-begin_detaching", "begin_detaching", commands.BeginDetaching())
roll_detaching = _plain("os-roll_detaching", "roll_detaching", commands.RollDetaching())


async def attach(d: Deps, ctx: RequestContext, vid: str, req: body.Attach) -> web.Response:
    attachment_id = str(uuid.uuid4())
    await act(
        d,
        ctx,
        vid,
        "os-attach",
        [f"{VOLUME_ACTIONS}:attach"],
        commands.Attach(
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
    await _driver_step(
        d,
        ctx,
        vid,
        "os-detach",
        [f"{VOLUME_ACTIONS}:detach"],
        commands.Detach(req.attachment_id, service=service),
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
    await _driver_step(
        d,
        ctx,
        vid,
        "os-force_detach",
        rules,
        commands.ForceDetach(req.attachment_id, req.connector, service=service),
        failure=NO_TERMINATE,
        pulls_attachment=True,
        attachment_id=req.attachment_id,
    )
    return _accepted()


async def terminate_connection(
    d: Deps, ctx: RequestContext, vid: str, req: body.TerminateConnection
) -> web.Response:
    service = ctx.is_service
    await _driver_step(
        d,
        ctx,
        vid,
        "os-terminate_connection",
        [f"{VOLUME_ACTIONS}:terminate_connection"],
        commands.TerminateConnection(req.connector, service=service),
        failure=NO_TERMINATE,
        pulls_attachment=True,
    )
    return _accepted()


async def initialize_connection(
    d: Deps, ctx: RequestContext, vid: str, req: body.InitializeConnection
) -> web.Response:
    """200 with the connection info the backend's export answered (the export saga); no
    volume state a reader sees changes. A backend failure is Cinder's 500."""

    rules = [f"{VOLUME_ACTIONS}:initialize_connection"]
    at, version = await _append(
        d,
        ctx,
        vid,
        "os-initialize_connection",
        _authorizer(d, ctx, rules),
        commands.InitializeConnection(req.connector),
    )
    outcome = await saga_succeeded(d, vid, at, version, failure=lambda _e: NO_CONNECTION)
    return web.json_response({"connection_info": outcome.event.connection_info})


async def update_readonly_flag(
    d: Deps, ctx: RequestContext, vid: str, req: body.UpdateReadonlyFlag
) -> web.Response:
    await act(
        d,
        ctx,
        vid,
        "os-update_readonly_flag",
        ["volume:update_readonly_flag"],
        commands.UpdateReadonlyFlag(req.readonly),
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
        commands.ResetStatus(
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
        d, ctx, vid, "os-set_image_metadata", rules, commands.SetImageMetadata(req.metadata)
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
    await act(d, ctx, vid, "os-unset_image_metadata", rules, commands.UnsetImageMetadata(req.key))
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
