"""The usage report both `cinderblock usage` and ``GET /v3/{project_id}/os-usage`` give:
parsing the window, and totals per volume and per type (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

PLACES = Decimal("0.000001")


SNAPSHOT = "snapshot"


class Row(Protocol):
    project_id: str
    volume_id: str
    volume_type_id: str
    hours: Decimal
    gib_hours: Decimal
    resource: str  # "volume" or "snapshot"
    snapshot_id: str | None


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 (``2026-11-01``, ``2026-11-01T10:00:00``, ``…Z``, ``…+02:00``); no zone
    means UTC. Raises ValueError."""
    value = text.strip()
    if not value:
        raise ValueError("empty timestamp")
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def window(since: str | None, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """[since, until): until defaults to now, since to the first of until's month (UTC).
    Raises ValueError on a malformed timestamp or an empty window."""
    end = parse_timestamp(until) if until else now.astimezone(UTC)
    start = parse_timestamp(since) if since else _month_start(end)
    if start >= end:
        raise ValueError("since must be before until")
    return start, end


def _month_start(end: datetime) -> datetime:
    """The first of ``end``'s month, or of the month before when ``end`` is that instant."""
    start = end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start < end:
        return start
    return (start - timedelta(days=1)).replace(day=1)


def _num(value: Decimal) -> float:
    return float(value.quantize(PLACES, rounding=ROUND_HALF_EVEN))


_ZERO = {"gib_hours": 0.0, "volume_gib_hours": 0.0, "snapshot_gib_hours": 0.0}


def _split(rows: Sequence[Row], key: Any) -> list[tuple[str, dict[str, float]]]:
    """(``key(row)``, its GiB·hours in all, of volumes, of snapshots), by key."""
    sums: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for r in rows:
        sums[key(r)][r.resource == SNAPSHOT] += r.gib_hours
    return [
        (k, {"gib_hours": _num(v + s), "volume_gib_hours": _num(v), "snapshot_gib_hours": _num(s)})
        for k, (v, s) in sorted(sums.items())
    ]


def usage_body(
    rows: Sequence[Row], *, project_id: str | None, since: datetime, until: datetime
) -> dict[str, Any]:
    """``{"usage": {...}}``: GiB·hours per volume (and type: a retyped volume has one line
    per type) in ``volumes``, per snapshot (under the type it was taken with, with its
    volume) in ``snapshots``; per type and per project, and in total, each split into
    volumes' and snapshots' (Ceilometer meters them apart: ``volume.size``,
    ``snapshot.size``); rounded to 6 places."""
    volumes = [r for r in rows if r.resource != SNAPSHOT]
    snapshots = [r for r in rows if r.resource == SNAPSHOT]
    everything = _split(rows, lambda r: "")
    total = everything[0][1] if everything else _ZERO
    return {
        "usage": {
            "project_id": project_id,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "unit": "GiB*hours",
            "total_gib_hours": total["gib_hours"],
            "volume_gib_hours": total["volume_gib_hours"],
            "snapshot_gib_hours": total["snapshot_gib_hours"],
            "volumes": [
                {
                    "project_id": r.project_id,
                    "volume_id": r.volume_id,
                    "volume_type_id": r.volume_type_id,
                    "hours": _num(r.hours),
                    "gib_hours": _num(r.gib_hours),
                }
                for r in volumes
            ],
            "snapshots": [
                {
                    "project_id": r.project_id,
                    "snapshot_id": r.snapshot_id,
                    "volume_id": r.volume_id,
                    "volume_type_id": r.volume_type_id,
                    "hours": _num(r.hours),
                    "gib_hours": _num(r.gib_hours),
                }
                for r in snapshots
            ],
            "volume_types": [
                {"volume_type_id": t, **v} for t, v in _split(rows, lambda r: r.volume_type_id)
            ],
            "projects": [{"project_id": p, **v} for p, v in _split(rows, lambda r: r.project_id)],
        }
    }
