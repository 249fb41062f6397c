"""The saga worker without NATS or PostgreSQL, for unit tests: `Volumes` on the in-memory
store, the file driver under a temporary folder, and a pump that hands every new row of the
log to its reaction as the relay would publish it (the same envelope, decoded from JSON as
a consumer receives it), until nothing new is appended."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cinderblock.drivers.base import PoolConfig, VolumeDriver
from cinderblock.drivers.file import FileDriver
from cinderblock.sagas.consumers import Sagas
from cinderblock.store.eventstore import START, Position, RecordedEvent
from cinderblock.store.mapping import event_data, event_name
from cinderblock.wire.envelope import EventEnvelope, ReceivedEnvelope, event_type
from tests.helpers.commands import Service, service_on

POOL = "h@file#pool"


@dataclass
class SagaBench:
    service: Service
    files: FileDriver
    sagas: Sagas
    after: Position = START
    delivered: list[ReceivedEnvelope] = field(default_factory=list)

    def envelope(self, record: RecordedEvent) -> ReceivedEnvelope:
        """What the relay publishes for ``record``, as a consumer receives it."""
        domain_event = self.service.store.decode(record)
        name = event_name(record.topic)
        sent = EventEnvelope(
            id=f"{record.originator_id}:{record.originator_version}",
            type=event_type(name),
            aggregate=event_type(name).partition(".")[0],
            aggregate_id=str(record.originator_id),
            version=record.originator_version,
            position=record.position,
            occurred_at=domain_event.timestamp,
            request_id=record.meta.get("request_id"),
            meta=record.meta,
            data=event_data(domain_event),
        )
        return ReceivedEnvelope.model_validate_json(sent.model_dump_json())

    async def deliver(self, env: ReceivedEnvelope) -> None:
        reaction = self.sagas.reactions.get(env.type)
        self.delivered.append(env)
        if reaction is not None:
            await reaction(env)

    async def pump(self, *, limit: int = 100) -> list[str]:
        """Deliver every row appended since the last pump, and what the reactions append,
        until the log is quiet. Returns the event types delivered."""
        seen: list[str] = []
        for _ in range(limit):
            rows = self.service.store.read_settled(self.after, 1000)
            if not rows:
                return seen
            for row in rows:
                env = self.envelope(row)
                seen.append(env.type)
                await self.deliver(env)
                self.after = row.at
        raise AssertionError(f"the sagas did not settle in {limit} rounds: {seen[-20:]}")

    def last(self, event: str) -> ReceivedEnvelope:
        """The last envelope of type ``event`` delivered (``volume.extend_requested``)."""
        return next(e for e in reversed(self.delivered) if e.type == event)

    def file_of(self, volume_id: str, host: str) -> Path:
        return self.files.volume_path(volume_id, host)


def saga_bench(root: Path, *, driver: Any = None, **service: Any) -> SagaBench:
    """A bench over a file driver with one 100 GiB pool under ``root``; ``driver`` wraps
    it (a callable given the file driver) when the test needs a failing step."""
    files = FileDriver(root, [PoolConfig.parse(f"{POOL}:100")])
    on = service_on(**service)
    used: VolumeDriver = driver(files) if driver is not None else files
    return SagaBench(on, files, Sagas(on.volumes, used))
