"""Admin views of the backends: `GET /scheduler-stats/get_pools` and `GET /os-services`,
read from what the volume service (the sagas) reports every few seconds."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cinderblock.api.deps import deps
from cinderblock.api.middleware import context
from cinderblock.readmodels.backends import pools, services
from cinderblock.wire.views import FILE_BACKEND_SHARES_TARGETS, format_time


def _capabilities(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "pool_name": row["name"].partition("#")[2],
        "volume_backend_name": row["backend"].partition("@")[2],
        "total_capacity_gb": row["capacity_gb"],
        "free_capacity_gb": row["free_gb"],
        "allocated_capacity_gb": row["allocated_gb"],
        "provisioned_capacity_gb": row["allocated_gb"],
        "reserved_percentage": 0,
        "thin_provisioning_support": True,
        "thick_provisioning_support": False,
        "max_over_subscription_ratio": "1.0",
        "multiattach": row["multiattach"],
        "storage_protocol": "file",
        "shared_targets": FILE_BACKEND_SHARES_TARGETS,
        "vendor_name": "Cinderblock",
        "driver_version": "1.0",
        "timestamp": format_time(row["updated_at"]),
    }


async def get_pools(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    d.policy.authorize(
        "scheduler_extension:scheduler_stats:get_pools",
        ctx.credentials,
        {"project_id": ctx.project_id},
    )
    detail = request.query.get("detail", "").lower() in ("true", "1", "yes")
    rows = await pools(d.pool)
    body = [
        {"name": r["name"], **({"capabilities": _capabilities(r)} if detail else {})} for r in rows
    ]
    return web.json_response({"pools": body})


async def list_services(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    d.policy.authorize(
        "volume_extension:services:index", ctx.credentials, {"project_id": ctx.project_id}
    )
    wanted_binary = request.query.get("binary")
    wanted_host = request.query.get("host")
    body = [
        {
            "binary": r["binary_name"],
            "host": r["host"],
            "zone": r["zone"],
            "status": "disabled" if r["disabled"] else "enabled",
            "state": "up" if r["up"] else "down",
            "updated_at": format_time(r["updated_at"]),
            "disabled_reason": None,
        }
        for r in await services(d.pool)
        if (wanted_binary is None or r["binary_name"] == wanted_binary)
        and (wanted_host is None or r["host"] == wanted_host)
    ]
    return web.json_response({"services": body})


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/scheduler-stats/get_pools", get_pools, allow_head=False)
    router.add_get(f"{prefix}/os-services", list_services, allow_head=False)
