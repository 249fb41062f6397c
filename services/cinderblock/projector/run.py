"""The projector: follows the event log and keeps the read models, each batch applied with
its tracking position in one transaction, then announced for read-your-writes waiters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import asyncpg

from cinderblock.config.settings import Settings
from cinderblock.readmodels.projections import PROJECTIONS, ProjectionEvent, apply_batch
from cinderblock.readmodels.quarantine import SetAside, Stopped, retry_will_fix
from cinderblock.readmodels.queries import projected_position
from cinderblock.runtime.infra import alive, database
from cinderblock.runtime.leadership import leadership
from cinderblock.store.eventstore import AsyncEventStore, Position, RecordedEvent
from cinderblock.store.mapping import event_data, event_name
from cinderblock.store.tail import LogTail

log = logging.getLogger(__name__)

NAME = "volumes"


class Projector:
    def __init__(self, pool: asyncpg.Pool, name: str = NAME) -> None:
        self.pool = pool
        self.name = name
        self.store = AsyncEventStore(pool)
        self.stopped = Stopped()

    def to_projection(self, record: RecordedEvent) -> ProjectionEvent:
        domain_event = self.store.decode(record)
        return ProjectionEvent(
            name=event_name(record.topic),
            aggregate_id=record.originator_id,
            version=record.originator_version,
            timestamp=domain_event.timestamp,
            data=event_data(domain_event),
        )

    def decode(
        self, batch: Sequence[RecordedEvent]
    ) -> tuple[list[ProjectionEvent], list[SetAside]]:
        """The batch's events that have a projection, and those that could not be decoded
        (set aside: decoding them again fails the same way)."""
        events, undecodable = [], []
        for r in batch:
            name = event_name(r.topic)
            if name not in PROJECTIONS:
                continue
            try:
                events.append(self.to_projection(r))
            except Exception as err:
                if retry_will_fix(err):
                    raise
                at = (r.tx_id, r.position)
                undecodable.append(
                    SetAside.failed(
                        self.name, r.originator_id, r.originator_version, name, err, at=at
                    )
                )
        return events, undecodable

    async def project(self, batch: Sequence[RecordedEvent]) -> int:
        events, undecodable = self.decode(batch)
        async with self.pool.acquire() as conn:
            return await apply_batch(
                conn,
                self.name,
                events,
                (batch[-1].tx_id, batch[-1].position),
                undecodable=undecodable,
                stopped=self.stopped,
            )

    async def position(self) -> Position:
        async with self.pool.acquire() as conn:
            return Position(*await projected_position(conn, self.name))

    async def follow(self, stop: asyncio.Event) -> None:
        """Project until ``stop``. A batch that fails for a reason of the moment (the
        database away, a timeout) is retried with back-off (never skipped: a read model
        with a hole would differ from a replay); an event that fails for a reason of its
        own is quarantined by ``apply_batch`` and the rest flows on."""
        delay = 0.5
        while not stop.is_set():
            try:
                async for batch in LogTail(self.pool).batches(await self.position(), stop):
                    await self.project(batch)
                    delay = 0.5
            except (OSError, asyncpg.PostgresConnectionError) as err:
                log.warning("projector lost the database, resuming: %s", err)
            except Exception:
                log.exception(
                    "projection failed; retrying in %.1fs", delay, extra={"projection": self.name}
                )
                delay = min(delay * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


async def run(settings: Settings, *, stop: asyncio.Event) -> None:
    settings.require_servers()
    async with database(settings, max_size=4, derived_only=True) as pool:
        with alive("projector"):
            async with leadership(pool, f"projector:{NAME}", stop) as leader:
                if leader:
                    log.info("projector active", extra={"projection": NAME})
                    await Projector(pool).follow(stop)
