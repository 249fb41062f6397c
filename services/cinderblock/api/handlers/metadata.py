"""Metadata endpoints of volumes and snapshots: `/{volumes,snapshots}/{id}/metadata[/{key}]`.

One implementation for both resources. Queries read the read model; every change is the
aggregate's ``Updated`` event carrying the whole resulting metadata. Order of checks is
Cinder's: body schema (400), resource lookup (404), policy (403), then the key (404).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cinderblock.api.body import json_body
from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps, deps
from cinderblock.api.middleware import RAW_REPLY, context
from cinderblock.readmodels.queries import get_snapshot, get_volume
from cinderblock.store.eventstore import Position
from cinderblock.wire.faults import BadRequest, NotFound
from cinderblock.wire.metadata import SNAPSHOT_METADATA, VOLUME_METADATA, MetadataSchema
from cinderblock.wire.schema import SchemaError

Change = Callable[[Any], dict[str, str]]
"""Runs on the loaded aggregate (Volume or Snapshot) inside the command; returns the result."""


@dataclass(frozen=True)
class Resource:
    """What differs between volume and snapshot metadata."""

    kind: str  # "volume" or "snapshot": URL segment is f"{kind}s", id parameter f"{kind}_id"
    schema: MetadataSchema
    get_rules: tuple[str, ...]  # checked in order on every read
    create_rule: str
    update_rule: str
    delete_rule: str
    read: Callable[[Deps, RequestContext, str], Awaitable[Mapping[str, Any] | None]]
    act: Callable[[Deps, RequestContext, str, Change, dict[str, Any]], Awaitable[Position]]

    def not_found(self, rid: str) -> NotFound:
        return NotFound(f"{self.kind.title()} {rid} could not be found.")

    def key_not_found(self, rid: str, key: str) -> NotFound:
        return NotFound(f"{self.kind.title()} {rid} has no metadata with key {key}.")


async def _read_volume(d: Deps, ctx: RequestContext, vid: str) -> Mapping[str, Any] | None:
    return await get_volume(d.pool, vid, project_id=None if ctx.is_admin else ctx.project_id)


async def _read_snapshot(d: Deps, ctx: RequestContext, sid: str) -> Mapping[str, Any] | None:
    return await get_snapshot(d.pool, sid, project_id=None if ctx.is_admin else ctx.project_id)


async def _act_volume(
    d: Deps, ctx: RequestContext, vid: str, change: Change, meta: dict[str, Any]
) -> Position:
    at, _ = await d.volumes.act(ctx.caller, vid, change, meta=meta)
    return at


async def _act_snapshot(
    d: Deps, ctx: RequestContext, sid: str, change: Change, meta: dict[str, Any]
) -> Position:
    at, _ = await d.volumes.snapshot_act(
        ctx.caller, sid, change, meta=meta, authorize=lambda _: None
    )
    return at


VOLUME = Resource(
    "volume",
    VOLUME_METADATA,
    ("volume:get_volume_metadata",),
    "volume:create_volume_metadata",
    "volume:update_volume_metadata",
    "volume:delete_volume_metadata",
    _read_volume,
    _act_volume,
)
SNAPSHOT = Resource(
    "snapshot",
    SNAPSHOT_METADATA,
    ("volume:get_snapshot", "volume:get_snapshot_metadata"),
    "volume:update_snapshot_metadata",  # Cinder has no separate create rule for snapshots
    "volume:update_snapshot_metadata",
    "volume:delete_snapshot_metadata",
    _read_snapshot,
    _act_snapshot,
)


def _parse(parse: Callable[[], dict[str, str]]) -> dict[str, str]:
    try:
        return parse()
    except SchemaError as err:
        raise BadRequest(str(err)) from err


class Endpoints:
    """The six handlers of one resource's metadata."""

    def __init__(self, resource: Resource) -> None:
        self.r = resource
        self.id_param = f"{resource.kind}_id"

    async def _current(self, request: web.Request) -> tuple[str, dict[str, str]]:
        d, ctx = deps(request), context(request)
        rid = request.match_info[self.id_param]
        row = await self.r.read(d, ctx, rid)
        if row is None:
            raise self.r.not_found(rid)
        for rule in self.r.get_rules:
            d.policy.authorize(rule, ctx.credentials, {"project_id": row["project_id"]})
        return rid, dict(row["metadata"] or {})

    async def _change(self, request: web.Request, rule: str, new: Change) -> dict[str, str]:
        """Apply ``new(current metadata) -> metadata``; returns the resulting metadata."""
        d, ctx = deps(request), context(request)
        rid = request.match_info[self.id_param]

        outcome: dict[str, dict[str, str]] = {}

        def change(aggregate: Any) -> dict[str, str]:
            d.policy.authorize(rule, ctx.credentials, {"project_id": aggregate.project_id})
            result = new(dict(aggregate.metadata))
            if result != aggregate.metadata:
                aggregate.update({"metadata": result})
            outcome["metadata"] = result
            return result

        at = await self.r.act(d, ctx, rid, change, ctx.meta(rule))
        await d.read_your_write(at)
        return outcome["metadata"]

    async def index(self, request: web.Request) -> web.Response:
        _, metadata = await self._current(request)
        return web.json_response({"metadata": metadata})

    async def show(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        rid, metadata = await self._current(request)
        if key not in metadata:
            raise self.r.key_not_found(rid, key)
        return web.json_response({"meta": {key: metadata[key]}})

    async def create(self, request: web.Request) -> web.Response:
        """POST: add or overwrite the given keys; the answer is the whole metadata."""
        body = await json_body(request)
        given = _parse(lambda: self.r.schema.parse_all(body))
        result = await self._change(request, self.r.create_rule, lambda m: {**m, **given})
        return web.json_response({"metadata": result})

    async def replace(self, request: web.Request) -> web.Response:
        """PUT: the given metadata replaces all of it."""
        body = await json_body(request)
        given = _parse(lambda: self.r.schema.parse_all(body))
        result = await self._change(request, self.r.update_rule, lambda m: dict(given))
        return web.json_response({"metadata": result})

    async def update_key(self, request: web.Request) -> web.Response:
        """PUT on one key: ``{"meta": {key: value}}`` (the key must be the URL's)."""
        body = await json_body(request)
        given = _parse(lambda: self.r.schema.parse_item(body, request.match_info["key"]))
        await self._change(request, self.r.update_rule, lambda m: {**m, **given})
        return web.json_response({"meta": given})

    async def delete_key(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        rid, metadata = await self._current(request)
        if key not in metadata:
            raise self.r.key_not_found(rid, key)

        def without(current: dict[str, str]) -> dict[str, str]:
            if key not in current:  # removed by a concurrent request meanwhile
                raise self.r.key_not_found(rid, key)
            return {k: v for k, v in current.items() if k != key}

        await self._change(request, self.r.delete_rule, without)
        request[RAW_REPLY] = True
        return web.Response(status=200)

    def setup(self, router: web.UrlDispatcher, prefix: str) -> None:
        base = f"{prefix}/{self.r.kind}s/{{{self.id_param}}}/metadata"
        router.add_get(base, self.index, allow_head=False)
        router.add_post(base, self.create)
        router.add_put(base, self.replace)
        router.add_get(f"{base}/{{key}}", self.show, allow_head=False)
        router.add_put(f"{base}/{{key}}", self.update_key)
        router.add_delete(f"{base}/{{key}}", self.delete_key)


VOLUME_ENDPOINTS = Endpoints(VOLUME)
SNAPSHOT_ENDPOINTS = Endpoints(SNAPSHOT)


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    VOLUME_ENDPOINTS.setup(router, prefix)
    SNAPSHOT_ENDPOINTS.setup(router, prefix)
