"""The outcome of an export or unexport request, read from the event log: the API waits for
it as Cinder's API waits on its RPC call (``initialize_connection``, ``attachment_update``,
``detach_volume``, ``terminate_connection``, ``attachment_delete``) to the volume service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from cinderblock.store.eventstore import AsyncEventStore, Position

SUCCEEDED = frozenset({"ExportCreated", "ExportsRemoved"})
FAILED = frozenset({"ExportFailed", "UnexportFailed"})

_AFTER = """
SELECT originator_version, topic, state, position, tx_id::text::bigint AS tx_id FROM events
WHERE originator_id = $1 AND originator_version > $2 ORDER BY originator_version
"""


@dataclass(frozen=True)
class Outcome:
    """The event that settled a request, and the log position of the append that holds it
    (its last event: the attachment's connection or detach recorded with it)."""

    event: Any
    at: Position

    @property
    def succeeded(self) -> bool:
        return type(self.event).__name__ in SUCCEEDED


async def outcome_of(
    store: AsyncEventStore, volume_id: str, request_version: int
) -> Outcome | None:
    """The outcome of the request the volume recorded at ``request_version``, if the log
    has it yet."""
    vid = UUID(volume_id)
    async with store.pool.acquire() as conn:
        rows = await conn.fetch(_AFTER, vid, request_version)
    found: Any = None
    at: Position | None = None
    for row in rows:
        if found is not None:
            if row["tx_id"] != at.tx_id:  # type: ignore[union-attr]
                break
            at = Position(row["tx_id"], row["position"])
            continue
        name = row["topic"].rpartition(".")[2]
        if name not in SUCCEEDED and name not in FAILED:
            continue
        event = store.mapper.to_domain_event(
            StoredEvent(vid, row["originator_version"], row["topic"], row["state"])
        )
        if getattr(event, "request_version", None) == request_version:
            found, at = event, Position(row["tx_id"], row["position"])
    if found is None or at is None:
        return None
    return Outcome(found, at)
