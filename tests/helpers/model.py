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


def row_version(events: list[LoggedEvent], version: int) -> int:
    """The ``version`` column the projector keeps for a row at aggregate ``version``: the
    last event at or before it whose projection writes the volume's row (the create, and
    the events `state.touches_volume_row` names; a Volume.SnapshotTaken does not)."""
    return max(
        e.version
        for e in events
        if e.version <= version and (e.version == 1 or state.touches_volume_row(e.name))
    )


def differences(seen: Seen, events: list[LoggedEvent], base_url: str) -> list[str]:
    """Where the state rebuilt at ``seen.version`` differs from what the live system
    showed: row columns (``version`` as the projector keeps it), then the rendered view
    against the API's GET."""
    volume, updated_at = state.rebuild(events, version=seen.version)
    if volume is None:
        return [f"no state at version {seen.version}"]
    rebuilt = state.volume_row(volume, updated_at)
    found = []
    for key, live in seen.row.items():
        if key == "version":
            want = row_version(events, seen.version)
            if live != want:
                found.append(f"row version: live={live} expected={want} (state {seen.version})")
            continue
        if key not in rebuilt:
            continue
        if rebuilt[key] != live:
            found.append(f"row {key}: live={live!r} state={rebuilt[key]!r}")
    if seen.shown is not None:
        view = volume_detail(rebuilt, view_context(base_url, volume.project_id), extended=True)
        for key in sorted(set(view) | set(seen.shown)):
            if view.get(key, "<absent>") != seen.shown.get(key, "<absent>"):
                found.append(
                    f"GET {key}: live={seen.shown.get(key, '<absent>')!r} "
                    f"state={view.get(key, '<absent>')!r}"
                )
    return found


def rendered(seen: Seen, events: list[LoggedEvent], base_url: str) -> dict[str, Any]:
    """The view `cinderblock state --version N` prints for this record."""
    volume, updated_at = state.rebuild(events, version=seen.version)
    return volume_detail(
        state.volume_row(volume, updated_at),
        view_context(base_url, volume.project_id),
        extended=True,
    )
