"""A volume's story: its events folded one by one through the Volume aggregate itself, each
row showing what the event changed in status, size, bootable and attachments (before →
after), and why when it records a reason (a failure, a refused retype, Nova's answer) with
the user message it left (``GET /messages``). Events of its snapshots are interleaved by
time and marked as such, and so are the changes the API refused about either (from the
API's request log, with the fault it answered)."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cinderblock.audit.cadf import RequestFacts
from cinderblock.audit.log import LoggedEvent
from cinderblock.audit.reasons import failure_reason, message_of

VOLUME_FIELDS = ("status", "size", "bootable", "attachments")
SNAPSHOT_FIELDS = ("status",)


@dataclass(frozen=True)
class HistoryRow:
    time: datetime
    aggregate: str  # "volume" or "snapshot <id>"
    version: int | None  # None: a refused request, which appended nothing
    event: str  # e.g. "Volume.Extended", or "refused os-extend (400)"
    actor: str
    request_id: str | None
    changes: dict[str, tuple[Any, Any]]  # field → (before, after), only what changed
    reason: str | None = None  # why it failed or was refused, as recorded
    message: dict[str, str] | None = None  # the user message it left: id, event_id, text

    def as_json(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "aggregate": self.aggregate,
            "version": self.version,
            "event": self.event,
            "actor": self.actor,
            "request_id": self.request_id,
            "changes": {k: {"before": b, "after": a} for k, (b, a) in self.changes.items()},
            "reason": self.reason,
            "user_message": self.message,
        }


def actor(meta: dict[str, Any]) -> str:
    """Who appended an event: the user (and project) of an API request, or the saga."""
    if "actor" in meta:
        return str(meta["actor"])
    user, project = meta.get("user_id"), meta.get("project_id")
    return f"{user} ({project})" if project and project != user else str(user)


def _attachments(volume: Any) -> list[str]:
    """``<server or host>:<attach status>`` per attachment, in attachment-id order."""
    return [
        f"{row.get('instance_uuid') or row.get('attached_host') or attachment_id}:"
        f"{row.get('attach_status')}"
        for attachment_id, row in sorted(volume.attachments.items())
    ]


def _volume_fields(volume: Any) -> dict[str, Any]:
    if volume is None:
        return dict.fromkeys(VOLUME_FIELDS)
    status = volume.status
    return {
        "status": getattr(status, "value", status),
        "size": volume.size_gb,
        "bootable": volume.bootable,
        "attachments": _attachments(volume),
    }


def _snapshot_fields(snapshot: Any) -> dict[str, Any]:
    status = getattr(snapshot, "status", None)
    return {"status": getattr(status, "value", status)}


def _fold(events: Sequence[LoggedEvent], fields: Any, label: Any) -> list[HistoryRow]:
    rows: list[HistoryRow] = []
    states: dict[Any, Any] = {}
    for logged in events:
        state = states.get(logged.aggregate_id)
        before = fields(state)
        state = states[logged.aggregate_id] = logged.event.mutate(state)
        after = fields(state)
        changes = {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}
        rows.append(
            HistoryRow(
                time=logged.timestamp,
                aggregate=label(logged),
                version=logged.version,
                event=logged.name,
                actor=actor(logged.meta),
                request_id=logged.meta.get("request_id"),
                changes=changes,
                reason=failure_reason(logged),
                message=message_of(logged),
            )
        )
    return rows


def _what(facts: RequestFacts) -> str:
    """``os-extend``, or the method and route when no action was named."""
    return facts.action or f"{facts.method or '?'} {facts.route or '?'}"


def _refused(refusals: Sequence[RequestFacts], volume_id: str) -> list[HistoryRow]:
    """Rows for the requests the API refused (reads are not part of the story)."""
    return [
        HistoryRow(
            time=r.at,
            aggregate="volume" if r.target_id == volume_id else f"snapshot {r.target_id}",
            version=None,
            event=f"refused {_what(r)} ({r.status})",
            actor=actor({"user_id": r.user_id, "project_id": r.project_id}),
            request_id=r.request_id,
            changes={},
            reason=r.fault,
        )
        for r in refusals
        if r.method not in ("GET", "HEAD")
    ]


def volume_history(
    own: Sequence[LoggedEvent],
    related: Sequence[LoggedEvent] = (),
    refusals: Sequence[RequestFacts] = (),
) -> list[HistoryRow]:
    """Rows for the volume's events (in version order) merged by time with its snapshots'
    and with the changes the API refused about them (``refusals``, oldest first)."""
    volume_rows = _fold(own, _volume_fields, lambda _: "volume")
    snapshot_rows = _fold(
        related,
        lambda s: dict.fromkeys(SNAPSHOT_FIELDS) if s is None else _snapshot_fields(s),
        lambda e: f"snapshot {e.aggregate_id}",
    )
    volume_id = str(own[0].aggregate_id) if own else ""
    refused = _refused(refusals, volume_id)
    return list(heapq.merge(volume_rows, snapshot_rows, refused, key=lambda r: r.time))


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return "-" if value is None else str(value)


def _why(row: HistoryRow) -> str:
    """The reason as recorded, then the user message's event id in brackets."""
    parts = [row.reason] if row.reason else []
    if row.message is not None:
        parts.append(f"[{row.message['event_id']}]")
    return " ".join(parts)


def render_table(rows: Sequence[HistoryRow]) -> str:
    """Fixed columns; changes as ``field: before → after``; why last."""
    header = ("TIME", "VERSION", "EVENT", "ACTOR", "REQUEST ID", "CHANGES", "REASON")
    lines = []
    for r in rows:
        event = r.event if r.aggregate == "volume" else f"[{r.aggregate}] {r.event}"
        change = "; ".join(f"{k}: {_cell(b)} → {_cell(a)}" for k, (b, a) in r.changes.items())
        when = r.time.strftime("%Y-%m-%d %H:%M:%S.%f")
        version = "-" if r.version is None else str(r.version)
        lines.append((when, version, event, r.actor, r.request_id or "-", change, _why(r)))
    widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(header[:-1])]
    out = []
    for line in (header, *lines):
        cells = [c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)]
        out.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(out)
