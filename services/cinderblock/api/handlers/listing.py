"""Query-string rules of volume lists: filters, sort, limit, marker, all_tenants."""

from __future__ import annotations

from collections.abc import Mapping

from cinderblock.api.context import RequestContext
from cinderblock.readmodels.queries import FILTER_COLUMNS, SORT_KEYS, ListQuery
from cinderblock.wire.faults import BadRequest, invalid_input
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.schema import parse_boolean

MAX_LIMIT = 1000
STRICT_FILTERS = APIVersion(3, 31)
# Keys that steer the listing rather than filter it.
CONTROL_KEYS = frozenset(
    {"limit", "marker", "sort", "sort_key", "sort_dir", "all_tenants", "with_count", "offset"}
)
# Filters Cinder allows that this service cannot evaluate yet: refused, never ignored, so
# a client never mistakes an unfiltered list for a filtered one.
NOT_YET = frozenset({"metadata", "created_at", "updated_at", "consumes_quota"})


def parse_limit(raw: str | None) -> int:
    """Cinder's ``_get_limit_param``: ``osapi_max_limit`` when absent, capped by it."""
    if raw is None:
        return MAX_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("limit param must be an integer") from None
    if value < 0:
        raise BadRequest("limit param must be positive")
    return min(value, MAX_LIMIT)


def _sort(query: Mapping[str, str]) -> list[tuple[str, str]]:
    if "sort" in query:
        pairs = []
        for item in query["sort"].split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key, direction or "desc"))
    else:
        keys = query.get("sort_key", "created_at").split(",")
        dirs = query.get("sort_dir", "desc").split(",")
        pairs = [(k, dirs[i] if i < len(dirs) else dirs[-1]) for i, k in enumerate(keys)]
    for key, direction in pairs:
        if direction not in ("asc", "desc"):
            raise invalid_input("Unknown sort direction, must be 'desc' or 'asc'.")
        if key not in SORT_KEYS:
            raise invalid_input(f"Invalid sort key {key}.")
    return pairs


# Filters only admins may use (Cinder skips its filter check for admins).
ADMIN_FILTERS = frozenset({"project_id", "user_id"})


def _filters(query: Mapping[str, str], ctx: RequestContext) -> dict[str, str]:
    filters: dict[str, str] = {}
    for key, value in query.items():
        if key in CONTROL_KEYS or (key == "project_id" and ctx.is_admin):
            continue
        if key in NOT_YET:
            raise invalid_input(f"Filtering volumes by {key} is not supported yet.")
        if key not in FILTER_COLUMNS or (key in ADMIN_FILTERS and not ctx.is_admin):
            if ctx.version.matches(STRICT_FILTERS) and not ctx.is_admin:
                raise BadRequest(f"Invalid filters {key} are found in query options.")
            continue
        if key == "bootable":
            try:
                value = "true" if parse_boolean(value) else "false"
            except ValueError:
                raise invalid_input(f"Invalid value '{value}' for bootable.") from None
        filters[key] = value
    return filters


def parse_list_query(query: Mapping[str, str], ctx: RequestContext) -> tuple[ListQuery, bool]:
    all_tenants = False
    if ctx.is_admin and "all_tenants" in query:
        try:
            all_tenants = parse_boolean(query["all_tenants"] or "true")
        except ValueError:
            all_tenants = True
    with_count = False
    if "with_count" in query:
        try:
            with_count = parse_boolean(query["with_count"])
        except ValueError:
            raise invalid_input("with_count must be a boolean.") from None
    project_id = None if all_tenants else ctx.project_id
    if ctx.is_admin and "project_id" in query:
        project_id = query["project_id"]  # an admin listing one project (cinder list --tenant)
    list_query = ListQuery(
        project_id=project_id,
        filters=_filters(query, ctx),
        sort=_sort(query),
        limit=parse_limit(query.get("limit")),
        marker=query.get("marker"),
    )
    return list_query, with_count
