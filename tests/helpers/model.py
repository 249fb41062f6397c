"""What the model-based test (`tests/e2e/test_model_based.py`) records while it runs, and
how it checks each record against the log: the live read-model row of a volume, taken in
one snapshot together with the volume version the projector had applied, and the API's
GET taken at the same position; afterwards, the state rebuilt at that version by the code
behind `cinderblock state` must equal both."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from cinderblock.audit import state
from cinderblock.audit.log import LoggedEvent
from cinderblock.readmodels.queries import get_volume
from cinderblock.wire.microversion import MAX_VERSION
from cinderblock.wire.views import ViewContext, volume_detail
from tests.helpers.client import CinderClient

# The row the projector wrote and the highest version of the volume's events at or before
# the projector's position, read in one snapshot (a tracked position is never ahead of a
# transaction that has not finished: the projector reads settled rows only).
_APPLIED = """
SELECT max(e.originator_version)
FROM events e, tracking t
WHERE t.name = 'volumes' AND e.originator_id = $1
  AND (e.tx_id::text::bigint, e.position) <= (t.tx_id, t.position)
"""

_CAUGHT_UP = """
SELECT coalesce(
  (SELECT (e.tx_id::text::bigint, e.position) <= (t.tx_id, t.position)
   FROM events e ORDER BY e.tx_id DESC, e.position DESC LIMIT 1),
  true)
FROM tracking t WHERE t.name = 'volumes'
"""


@dataclass(frozen=True)
class Seen:
    """One volume as the live system showed it, at the volume version ``version``."""

    volume_id: str
    version: int
    row: dict[str, Any]  # queries.get_volume
    shown: dict[str, Any] | None  # GET /volumes/{id}, None if the position moved meanwhile
    step: str  # the command after which it was taken


async def caught_up(pool: asyncpg.Pool) -> bool:
    """The projector has applied every event committed so far."""
    async with pool.acquire() as conn:
        return bool(await conn.fetchval(_CAUGHT_UP))


async def _read(pool: asyncpg.Pool, vid: str) -> tuple[int | None, dict[str, Any] | None]:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        version = await conn.fetchval(_APPLIED, uuid.UUID(vid))
        row = await get_volume(conn, vid, project_id=None)
    return version, row


async def observe(pool: asyncpg.Pool, client: CinderClient, vid: str, step: str) -> Seen | None:
    """The live row and GET of ``vid`` now; None when the volume is not shown (deleted)."""
    version, row = await _read(pool, vid)
    shown = await client.volume(vid)
    again = await _read(pool, vid)
    if row is None or version is None:
        return None
    same_position = again == (version, row)
    return Seen(vid, version, row, shown if same_position else None, step)


def view_context(base_url: str, project_id: str) -> ViewContext:
    """What `cinderblock state` renders with (admin, the newest microversion)."""
    return ViewContext(
        version=MAX_VERSION,
        is_admin=True,
        roles=frozenset({"admin"}),
        base_url=base_url,
        project_in_url=project_id,
    )


async def rebuilt_row(
    conn: asyncpg.Connection, seen: Seen, events: list[LoggedEvent]
) -> dict[str, Any] | None:
    """The row `cinderblock state --version N` shows for this record."""
    found = await state.rows(conn, events, version=seen.version)
    return found.volume(seen.volume_id, deleted=True)


async def differences(
    conn: asyncpg.Connection, seen: Seen, events: list[LoggedEvent], base_url: str
) -> list[str]:
    """Where the state rebuilt at ``seen.version`` differs from what the live system
    showed: every column of the row (``version`` and ``updated_at`` included), then the
    rendered view against the API's GET."""
    rebuilt = await rebuilt_row(conn, seen, events)
    if rebuilt is None:
        return [f"no state at version {seen.version}"]
    found = [
        f"row {key}: live={seen.row.get(key, '<absent>')!r} state={rebuilt.get(key, '<absent>')!r}"
        for key in sorted(set(seen.row) | set(rebuilt))
        if seen.row.get(key, "<absent>") != rebuilt.get(key, "<absent>")
    ]
    if seen.shown is not None:
        view = rendered(rebuilt, base_url)
        for key in sorted(set(view) | set(seen.shown)):
            if view.get(key, "<absent>") != seen.shown.get(key, "<absent>"):
                found.append(
                    f"GET {key}: live={seen.shown.get(key, '<absent>')!r} "
                    f"state={view.get(key, '<absent>')!r}"
                )
    return found


def rendered(row: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The view `cinderblock state` prints for a rebuilt row."""
    return volume_detail(row, view_context(base_url, row["project_id"]), extended=True)
