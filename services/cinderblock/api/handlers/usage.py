"""``GET /v3/{project_id}/os-usage[/{target}]?since=&until=``: a project's billed GiB·hours
of volumes and snapshots, listed apart, from the billing ledger (a Cinderblock extension;
docs/decisions.md "Usage ledger", "Snapshots: billing and the type of a volume made from
one").

Authorised by Cinder's quota-show rule (project reader, or admin for any project): the
nearest rule Cinder has for reading a project's usage.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from cinderblock.api.deps import deps
from cinderblock.api.middleware import context
from cinderblock.usage.report import usage_body, window
from cinderblock.usage.store import usage
from cinderblock.wire.faults import BadRequest


async def show(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    target = request.match_info.get("target") or ctx.project_id
    d.policy.authorize("volume_extension:quotas:show", ctx.credentials, {"project_id": target})
    try:
        since, until = window(
            request.query.get("since"), request.query.get("until"), datetime.now(UTC)
        )
    except ValueError as err:
        raise BadRequest(f"Invalid usage window: {err}.") from None
    rows = await usage(d.pool, project_id=target, since=since, until=until)
    return web.json_response(usage_body(rows, project_id=target, since=since, until=until))


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/os-usage", show, allow_head=False)
    router.add_get(f"{prefix}/os-usage/{{target}}", show, allow_head=False)
