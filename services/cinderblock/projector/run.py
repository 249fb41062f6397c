"""The projector: follows the event log and keeps the read models, each batch applied with
its tracking position in one transaction, then announced for read-your-writes waiters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from uuid import UUID

import asyncpg

from cinderblock.config.settings import Settings
from cinderblock.readmodels.event import ProjectionEvent
from cinderblock.readmodels.projections import STEPS, LiveRows, apply_batch
from cinderblock.readmodels.quarantine import SetAside, Stopped
from cinderblock.readmodels.queries import projected_position
from cinderblock.readmodels.tables import TableSpec, load_specs
from cinderblock.replay.decode import Decoder
from cinderblock.replay.folding import aggregate_history
from cinderblock.runtime.infra import alive, database
from cinderblock.runtime.leadership import lead
from cinderblock.store.eventstore import Position, RecordedEvent
from cinderblock.store.tail import LogTail

log = logging.getLogger(__name__)

NAME = "volumes"


def _row(r: RecordedEvent) -> tuple[int, int, UUID, int, str, bytes, str | None, str | None]:
    """The row in replay's layout (``replay.source``): the request of its meta last."""
    meta = r.meta
    return (
        r.tx_id,
        r.position,
        r.originator_id,
        r.originator_version,
        r.topic,
        r.state,
        _text(meta.get("request_id")),
        _text(meta.get("project_id")),
    )


def _text(value: object) -> str | None:
    """As PostgreSQL's ``meta->>key`` reads a string (replay reads it so)."""
    return None if value is None else str(value)


class Projector:
    def __init__(self, pool: asyncpg.Pool, name: str = NAME) -> None:
        self.pool = pool
        self.name = name
        # Replay's decoder: the stored row's fields as plain values, the same as the domain
        # event's (``tests/unit/replay/test_decode.py``), without building the event.
        self.decoder = Decoder(wanted=STEPS)
        self.stopped = Stopped()
        self.live = LiveRows()
        self._specs: dict[str, TableSpec] | None = None

    def decode(
        self, batch: Sequence[RecordedEvent]
    ) -> tuple[list[ProjectionEvent], list[SetAside]]:
        """The batch's events that have a projection, and those that could not be decoded
        (set aside: decoding them again fails the same way)."""
        events, undecodable = self.decoder.rows([_row(r) for r in batch], self.name)
        return events, undecodable  # type: ignore[return-value]

    async def project(self, batch: Sequence[RecordedEvent]) -> int:
        events, undecodable = self.decode(batch)
        upto = Position(batch[-1].tx_id, batch[-1].position)
        async with self.pool.acquire() as conn:
            if self._specs is None:
                self._specs = await load_specs(conn)

            async def events_of(aggregate_id: UUID) -> list[ProjectionEvent | SetAside]:
                return await aggregate_history(conn, self.decoder, aggregate_id, upto, self.name)

            return await apply_batch(
                conn,
                self.name,
                events,  # type: ignore[arg-type]
                (upto.tx_id, upto.position),
                specs=self._specs,
                history=events_of,
                undecodable=undecodable,
                stopped=self.stopped,
                live=self.live,
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

        async def work(until: asyncio.Event) -> None:
            log.info("projector active", extra={"projection": NAME})
            await Projector(pool).follow(until)

        with alive("projector"):
            await lead(pool, f"projector:{NAME}", stop, work)
