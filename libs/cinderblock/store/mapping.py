"""Turns eventsourcing domain events into stored rows and back (JSON in bytea)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    Transcoding,
    UUIDAsHex,
)

from cinderblock.domain.pending import PendingOperation
from cinderblock.store import topics as _topics  # noqa: F401  (registers renamed topics)


class PendingOperationAsDict(Transcoding):
    """A volume's pending operation in an aggregate snapshot's state (events never carry
    one: their fields are primitives)."""

    type = PendingOperation
    name = "cinderblock_pending_operation"

    def encode(self, obj: PendingOperation[Any]) -> dict[str, Any]:
        return obj.to_state()

    def decode(self, data: dict[str, Any]) -> PendingOperation[Any]:
        return PendingOperation.from_state(data)


def make_mapper() -> Mapper[UUID]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr(), PendingOperationAsDict()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


def event_name(topic: str) -> str:
    """``cinderblock.domain.volume:Volume.Extended`` → ``Volume.Extended``."""
    return topic.rpartition(":")[2]


def plain(value: Any) -> Any:
    """Event attribute → JSON-able value (UUID → str, datetime → ISO)."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def event_data(domain_event: DomainEventProtocol[Any]) -> dict[str, Any]:
    """An event's own fields, without the envelope attributes."""
    skip = {"originator_id", "originator_version", "timestamp", "originator_topic"}
    return {k: plain(v) for k, v in vars(domain_event).items() if k not in skip}


def to_stored(
    mapper: Mapper[UUID], events: Iterable[DomainEventProtocol[Any]]
) -> list[StoredEvent]:
    return [mapper.to_stored_event(e) for e in events]
