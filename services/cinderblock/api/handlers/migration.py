"""os-migrate_volume and os-migrate_volume_completion (admin)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps
from cinderblock.api.handlers.bookkeeping import ADMIN_ACTIONS, VOLUME_ACTIONS, act
from cinderblock.domain import commands
from cinderblock.domain.placement import backend_of
from cinderblock.domain.swap import swaps_attachments
from cinderblock.domain.volume import Volume
from cinderblock.drivers.base import PoolConfig
from cinderblock.wire.migration import MigrateVolume, MigrateVolumeCompletion

MIGRATE_RULE = f"{ADMIN_ACTIONS}:migrate_volume"
COMPLETION_RULE = f"{ADMIN_ACTIONS}:migrate_volume_completion"
# Nova's swap moves attachments: detach from the old volume, attach to the new one.
SWAP_DETACH_RULE = f"{VOLUME_ACTIONS}:detach"
SWAP_ATTACH_RULE = f"{VOLUME_ACTIONS}:attach"


def _known_destination(d: Deps, destination: str) -> bool:
    """An up backend (``host@backend``): Cinder looks the service up by the destination's
    backend, the pool part ignored; whether the pool exists and suits the volume is the
    scheduler's check, after the 202 (the migrate saga)."""
    pools = [PoolConfig.parse(p) for p in d.settings.pools]
    return backend_of(destination) in {f"{p.host}@{p.backend}" for p in pools}


async def migrate_volume(
    d: Deps, ctx: RequestContext, vid: str, req: MigrateVolume
) -> web.Response:
    destination = req.host or req.cluster or ""

    # The policy check runs first (in act); the destination is checked before the volume.
    start = commands.StartMigration(
        destination,
        destination_known=req.cluster is None and _known_destination(d, destination),
        force_host_copy=req.force_host_copy,
        lock_volume=req.lock_volume,
    )
    await act(d, ctx, vid, "os-migrate_volume", [MIGRATE_RULE], start)
    return web.Response(status=202)


async def migrate_volume_completion(
    d: Deps, ctx: RequestContext, vid: str, req: MigrateVolumeCompletion
) -> web.Response:
    """Neither volume migrating: Nova's swap, the source's attachments move to the new
    volume (``cinderblock.domain.swap``). This service migrates in place (the source id
    keeps the new data), so no volume is ever a ``target:<id>`` destination and a
    completion of a migration answers Cinder's 400s."""

    def authorize(volume: Volume) -> None:
        d.policy.authorize(COMPLETION_RULE, ctx.credentials, {"project_id": volume.project_id})

    def authorize_detach(volume: Volume) -> None:
        d.policy.authorize(SWAP_DETACH_RULE, ctx.credentials, {"project_id": volume.project_id})

    def authorize_swap(source: Volume, target: Volume) -> None:
        authorize_detach(source)
        d.policy.authorize(SWAP_ATTACH_RULE, ctx.credentials, {"project_id": target.project_id})

    if not req.error:
        await _nova_allows_swap(d, ctx, vid, req.new_volume, authorize, authorize_detach)
    at = await d.volumes.migrate_volume_completion(
        ctx.caller,
        vid,
        req.new_volume,
        error=req.error,
        meta=ctx.meta("os-migrate_volume_completion"),
        authorize=authorize,
        authorize_swap=authorize_swap,
    )
    await d.read_your_write(at)
    return web.json_response({"save_volume_id": req.new_volume})


async def _nova_allows_swap(
    d: Deps,
    ctx: RequestContext,
    vid: str,
    new_volume: str,
    authorize: Callable[[Volume], None],
    authorize_detach: Callable[[Volume], None],
) -> None:
    """Cinder's swap detaches through its API's ``detach``, so a user (not a service) is
    subject to the attachment safety check for each attachment it moves (Nova asked when
    one is configured); checked before anything is appended."""
    if d.nova is None or ctx.is_service:
        return
    source = await d.volumes.get(ctx.caller, vid)
    authorize(source)
    target = source if new_volume == vid else await d.volumes.get(ctx.caller, new_volume)
    if swaps_attachments(source, target, error=False):
        for attachment_id in source.attachments:
            await d.nova_allows(ctx, vid, attachment_id, authorize_detach)
