"""The asyncpg event store holds to the event store contract (tests/helpers/
store_contract.py) on real PostgreSQL: as one process alone (another process is another
store with a writer of its own), and as two stores of one process sharing its writer (the
API and the sagas in `cinderblock dev`)."""

from __future__ import annotations

import asyncpg
import pytest

from cinderblock.store.eventstore import (
    AsyncEventStore,
    EventStore,
    Position,
    RecordedEvent,
    read_settled,
)
from tests.helpers.store_contract import EventStoreContract


class TestAsyncEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, pool: asyncpg.Pool) -> AsyncEventStore:
        return AsyncEventStore(pool)

    def other(self, store: EventStore) -> EventStore:
        assert isinstance(store, AsyncEventStore)
        return AsyncEventStore(store.pool)

    async def settled(self, store: EventStore, after: Position, limit: int) -> list[RecordedEvent]:
        assert isinstance(store, AsyncEventStore)
        async with store.pool.acquire() as conn:
            return await read_settled(conn, after, limit)


class TestAsyncEventStoreSharingAWriter(TestAsyncEventStore):
    def other(self, store: EventStore) -> EventStore:
        assert isinstance(store, AsyncEventStore)
        return AsyncEventStore(store.pool, writer=store.writer)
