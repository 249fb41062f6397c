"""os-migrate_volume and os-migrate_volume_completion (admin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps
from cinderblock.api.handlers.bookkeeping import ADMIN_ACTIONS, act
from cinderblock.drivers.base import PoolConfig
from cinderblock.readmodels.queries import get_volume
from cinderblock.wire.faults import BadRequest, volume_not_found
from cinderblock.wire.migration import MigrateVolume, MigrateVolumeCompletion


def _known_destination(d: Deps, destination: str) -> bool:
    """An up backend (``host@backend``), optionally with one of its pools."""
    pools = [PoolConfig.parse(p) for p in d.settings.pools]
    return destination in {p.location for p in pools} | {f"{p.host}@{p.backend}" for p in pools}


async def migrate_volume(
    d: Deps, ctx: RequestContext, vid: str, req: MigrateVolume
) -> web.Response:
    destination = req.host or req.cluster or ""

    def start(volume: Any) -> None:
        # the policy check ran first (in _act); the destination is checked before the volume
        if req.cluster is not None or not _known_destination(d, destination):
            raise BadRequest(f"Invalid host: No available service named '{destination}'")
        volume.start_migration(
            destination, force_host_copy=req.force_host_copy, lock_volume=req.lock_volume
        )

    await act(d, ctx, vid, "os-migrate_volume", [f"{ADMIN_ACTIONS}:migrate_volume"], start)
    return web.Response(status=202)


async def migrate_volume_completion(
    d: Deps, ctx: RequestContext, vid: str, req: MigrateVolumeCompletion
) -> web.Response:
    """This service migrates in place (the source id keeps the new data), so no volume is
    ever a ``target:<id>`` destination: the completion only succeeds when neither volume is
    mid-migration, and answers as Cinder does otherwise."""
    rule = f"{ADMIN_ACTIONS}:migrate_volume_completion"
    source = await get_volume(d.pool, vid, project_id=None if ctx.is_admin else ctx.project_id)
    if source is None:
        raise volume_not_found(vid)
    d.policy.authorize(rule, ctx.credentials, {"project_id": source["project_id"]})
    target = await get_volume(d.pool, req.new_volume, project_id=None)
    if target is None:
        raise volume_not_found(req.new_volume)
    if source["migration_status"] is None and target["migration_status"] is None:
        return web.json_response({"save_volume_id": req.new_volume})
    if source["migration_status"] is None:
        raise BadRequest("Invalid volume: Source volume not mid-migration.")
    if target["migration_status"] is None:
        raise BadRequest("Invalid volume: Destination volume not mid-migration.")
    raise BadRequest(
        f"Invalid volume: Destination has migration_status {target['migration_status']}, "
        f"expected target:{vid}."
    )


MIGRATION_ACTIONS: dict[str, Callable[..., Any]] = {
    "os-migrate_volume": migrate_volume,
    "os-migrate_volume_completion": migrate_volume_completion,
}
