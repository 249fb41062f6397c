"""User messages (3.3+): list, show, delete, as Cinder's MessagesController. Reads come from
the ``messages`` read model; a delete is a ``MessageDeleted`` event on the aggregate of the
resource the message is about, so a replay keeps it deleted.

Listing follows Cinder (``cinder/api/v3/messages.py``, ``common.get_pagination_params`` and
``get_sort_params``, ``reject_invalid_filters``, ``db.message_get_all``): below 3.5 every
message, newest first, whatever the query; from 3.5 filters, sort, limit, marker and
offset; from 3.31 a non-admin may filter only by the keys Cinder enables for messages
(``key~`` too from 3.34), while any other key, and any key for an admin, that is no
column of a message matches nothing. Unlike Cinder, a non-admin sees only the messages of
their own project (Cinder lists every project's: docs/decisions.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps, deps
from cinderblock.api.handlers.listing import MAX_LIMIT, parse_limit
from cinderblock.api.middleware import RAW_REPLY, context
from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.user_messages import MessageNotFoundError
from cinderblock.domain.volume import Volume
from cinderblock.readmodels.message_queries import (
    DEFAULT_SORT_KEYS,
    FILTER_COLUMNS,
    SORT_COLUMNS,
    MessageQuery,
    get_message,
    list_messages,
)
from cinderblock.wire.faults import BadRequest, NotFound, invalid_input, resource_not_found
from cinderblock.wire.user_messages import (
    ENABLED_FILTERS,
    LIKE_FILTER_VERSION,
    MESSAGES_VERSION,
    PAGINATION_VERSION,
    STRICT_FILTERS_VERSION,
    Resource,
    message_not_found_text,
    message_view,
)

DB_MAX_INT = 0x7FFFFFFF
_PAGING_KEYS = ("limit", "marker", "offset", "sort", "sort_key", "sort_dir")
# Columns of Cinder's Message model this read model does not filter on: refused, never
# ignored, so a list is never mistaken for a filtered one.
NOT_YET = frozenset({"created_at", "expires_at", "updated_at", "deleted", "deleted_at"})


def setup(r: web.UrlDispatcher, prefix: str) -> None:
    r.add_get(f"{prefix}/messages", index, allow_head=False)
    r.add_get(f"{prefix}/messages/{{message_id}}", show, allow_head=False)
    r.add_delete(f"{prefix}/messages/{{message_id}}", delete)


def _since_3_3(ctx: RequestContext) -> None:
    """Below 3.3 the controller's methods do not exist: Cinder's generic 404."""
    if not ctx.version.matches(MESSAGES_VERSION):
        raise resource_not_found()


def _scope(ctx: RequestContext) -> str | None:
    return None if ctx.is_admin else ctx.project_id


async def _message(d: Deps, ctx: RequestContext, message_id: str, rule: str) -> dict[str, Any]:
    """The message as the caller may see it (404 otherwise), then ``rule`` on it (403)."""
    row = await get_message(d.pool, message_id, project_id=_scope(ctx))
    if row is None:
        raise NotFound(message_not_found_text(message_id))
    d.policy.authorize(rule, ctx.credentials, {"project_id": row["project_id"] or ""})
    return row


async def show(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _since_3_3(ctx)
    row = await _message(d, ctx, request.match_info["message_id"], "message:get")
    return web.json_response({"message": message_view(row, ctx.view)})


async def delete(request: web.Request) -> web.Response:
    """204; the message stays deleted for good (its aggregate records it)."""
    d, ctx = deps(request), context(request)
    _since_3_3(ctx)
    message_id = request.match_info["message_id"]
    row = await _message(d, ctx, message_id, "message:delete")
    holder = Snapshot if row["resource_type"] == Resource.VOLUME_SNAPSHOT else Volume
    try:
        at = await d.volumes.delete_message(
            holder, UUID(row["resource_uuid"]), row["id"], meta=ctx.meta("message:delete")
        )
    except MessageNotFoundError as err:
        raise NotFound(err.message) from err
    await d.read_your_write(at, volume_id=row["resource_uuid"])
    request[RAW_REPLY] = True
    return web.Response(status=204)


async def index(request: web.Request) -> web.Response:
    d, ctx = deps(request), context(request)
    _since_3_3(ctx)
    d.policy.authorize("message:get_all", ctx.credentials, {"project_id": ctx.project_id})
    params = {key: request.query.getall(key)[-1] for key in request.query}
    query = parse_message_query(params, ctx)
    try:
        rows = [] if query is None else await list_messages(d.pool, query)
    except LookupError as err:
        raise NotFound(message_not_found_text(str(err.args[0]))) from err
    body: dict[str, Any] = {"messages": [message_view(r, ctx.view) for r in rows]}
    limit = parse_limit(params.get("limit"))  # the view's own reading, as Cinder's
    if rows and limit <= len(rows):
        body["messages_links"] = [{"rel": "next", "href": _next(ctx, params, rows[-1]["id"])}]
    return web.json_response(body)


def _next(ctx: RequestContext, params: Mapping[str, str], marker: str) -> str:
    """Cinder's ``_get_next_link``: the same query with the last message as marker."""
    base = ctx.base_url.rstrip("/")
    project = f"{ctx.project_in_url}/" if ctx.project_in_url else ""
    return f"{base}/v3/{project}messages?{urlencode({**params, 'marker': marker})}"


def _offset(raw: str | None) -> int:
    """``validate_integer(offset, 'offset', 0, DB_MAX_INT)``."""
    if raw is None:
        return 0
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadRequest("offset must be an integer") from None
    if value < 0:
        raise BadRequest("offset must be >= 0")
    if value > DB_MAX_INT:
        raise BadRequest(f"offset must be <= {DB_MAX_INT}")
    return value


def _sort(params: Mapping[str, str]) -> list[tuple[str, str]]:
    """``get_sort_params`` then ``process_sort_params``: the keys asked for, then
    ``created_at`` and ``id`` in the first direction; directions checked here, keys by
    ``_check_sort_keys``."""
    if "sort" in params and ("sort_key" in params or "sort_dir" in params):
        raise BadRequest(
            "The 'sort_key' and 'sort_dir' parameters are deprecated and cannot be used "
            "with the 'sort' parameter."
        )
    if "sort" in params:
        keys, dirs = [], []
        for item in params["sort"].strip().split(","):
            key, _, direction = item.partition(":")
            keys.append(key.strip())
            dirs.append((direction or "desc").strip())
    else:
        keys = [params.get("sort_key", "created_at").strip()]
        dirs = [params.get("sort_dir", "desc").strip()]
    for direction in dirs:
        if direction not in ("asc", "desc"):
            raise invalid_input("Unknown sort direction, must be 'desc' or 'asc'.")
    pairs = list(zip(keys, dirs, strict=True))
    pairs += [(key, dirs[0]) for key in DEFAULT_SORT_KEYS if key not in keys]
    return pairs


def _check_sort_keys(sort: list[tuple[str, str]]) -> None:
    if any(key not in SORT_COLUMNS for key, _ in sort):
        raise invalid_input("Invalid sort key")


def _reject_invalid_filters(filters: dict[str, str], ctx: RequestContext) -> None:
    """Cinder's ``reject_invalid_filters`` for resource ``message`` (3.31+)."""
    for key in filters:
        if not key.isascii():
            raise BadRequest("Filter keys can only contain ASCII characters.")
    if ctx.is_admin:
        return
    like = ctx.version.matches(LIKE_FILTER_VERSION)
    invalid = [
        key
        for key in filters
        if not (
            key in ENABLED_FILTERS or (like and key.endswith("~") and key[:-1] in ENABLED_FILTERS)
        )
    ]
    if "all_tenants" in invalid:  # cinderclient adds it; Cinder drops it silently
        invalid.remove("all_tenants")
        filters.pop("all_tenants")
    if invalid:
        raise BadRequest(f"Invalid filters {','.join(invalid)} are found in query options.")


def parse_message_query(params: Mapping[str, str], ctx: RequestContext) -> MessageQuery | None:
    """The list query of ``params`` at the caller's microversion; None when its filters can
    match nothing (a key that is no column of a message)."""
    scope = _scope(ctx)
    if not ctx.version.matches(PAGINATION_VERSION):
        return MessageQuery(project_id=scope)
    filters = dict(params)
    limit = parse_limit(filters.pop("limit", None))
    marker = filters.pop("marker", None)
    offset = _offset(filters.pop("offset", None))
    sort = _sort(filters)
    for key in ("sort", "sort_key", "sort_dir"):
        filters.pop(key, None)
    if ctx.version.matches(STRICT_FILTERS_VERSION):
        _reject_invalid_filters(filters, ctx)
    exact: dict[str, str] = {}
    like: dict[str, str] = {}
    for key, value in filters.items():
        column = key[:-1] if key.endswith("~") else key
        if column in NOT_YET:
            raise invalid_input(f"Filtering messages by {column} is not supported yet.")
        if column not in FILTER_COLUMNS:
            return None  # Cinder: is_valid_model_filters fails, the list is empty
        (like if key.endswith("~") else exact)[column] = value
    _check_sort_keys(sort)
    return MessageQuery(
        project_id=scope,
        filters=exact,
        like=like,
        sort=sort,
        limit=min(limit, MAX_LIMIT),
        offset=offset,
        marker=marker,
    )
