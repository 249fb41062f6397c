"""Reading the event log for audit tooling: a volume's own events (and its snapshots'), and
the events of a time window, each with the ``meta`` stored beside it, decoded to domain
events. Read-only; never goes through the cached store (tools may run beside the services)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from eventsourcing.persistence import StoredEvent

from cinderblock.store.mapping import event_name, make_mapper

_COLUMNS = """position, originator_id, originator_version, topic, state, meta::text AS meta,
    recorded_at"""

_mapper = make_mapper()


@dataclass(frozen=True)
class LoggedEvent:
    """One stored event, decoded, with who and why."""

    position: int
    aggregate_id: UUID
    version: int
    name: str  # e.g. "Volume.Extended"
    event: Any  # the domain event (``.timestamp``, its fields, ``.mutate``)
    meta: dict[str, Any]
    recorded_at: datetime

    @property
    def timestamp(self) -> datetime:
        stamp: datetime = self.event.timestamp
        return stamp

    @property
    def kind(self) -> str:
        """The aggregate class name: Volume, Snapshot, ProjectQuota, VolumeType, …"""
        return self.name.partition(".")[0]

    @property
    def from_api(self) -> bool:
        """Appended by an API request (sagas and bootstrap name an ``actor``)."""
        return "actor" not in self.meta and bool(self.meta.get("request_id"))


def _decode(rows: Iterable[asyncpg.Record]) -> list[LoggedEvent]:
    found = []
    for r in rows:
        stored = StoredEvent(r["originator_id"], r["originator_version"], r["topic"], r["state"])
        found.append(
            LoggedEvent(
                position=r["position"],
                aggregate_id=r["originator_id"],
                version=r["originator_version"],
                name=event_name(r["topic"]),
                event=_mapper.to_domain_event(stored),
                meta=json.loads(r["meta"]),
                recorded_at=r["recorded_at"],
            )
        )
    return found


async def aggregate_events(conn: asyncpg.Connection, ids: Sequence[UUID]) -> list[LoggedEvent]:
    """Every event of the aggregates ``ids``, in log order."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM events WHERE originator_id = ANY($1::uuid[]) "
        "ORDER BY originator_id, originator_version",
        list(ids),
    )
    return sorted(_decode(rows), key=lambda e: (e.timestamp, e.position))


async def volume_story(
    conn: asyncpg.Connection, volume_id: UUID
) -> tuple[list[LoggedEvent], list[LoggedEvent]]:
    """The volume's events (version order) and those of the snapshots it ever had."""
    own = [e for e in await aggregate_events(conn, [volume_id]) if e.aggregate_id == volume_id]
    own.sort(key=lambda e: e.version)
    snapshot_ids = {UUID(e.event.snapshot_id) for e in own if e.name == "Volume.SnapshotTaken"}
    related = await aggregate_events(conn, sorted(snapshot_ids)) if snapshot_ids else []
    return own, related


async def window_events(
    conn: asyncpg.Connection, since: datetime, until: datetime | None
) -> list[LoggedEvent]:
    """Events recorded in ``[since, until)`` that belong to a request (have a request id),
    in log order."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM events WHERE recorded_at >= $1 "
        "AND ($2::timestamptz IS NULL OR recorded_at < $2) AND meta ? 'request_id' "
        "ORDER BY position",
        since,
        until,
    )
    return _decode(rows)
