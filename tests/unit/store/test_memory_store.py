"""The in-memory event store holds to the event store contract (tests/helpers/
store_contract.py), and only tests use it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cinderblock.store.eventstore import EventStore, Position, RecordedEvent
from cinderblock.store.memory import MemoryEventStore
from tests.helpers.store_contract import EventStoreContract

ROOT = Path(__file__).resolve().parents[3]


class TestMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> MemoryEventStore:
        return MemoryEventStore()

    def other(self, store: EventStore) -> EventStore:
        assert isinstance(store, MemoryEventStore)
        return store.sibling()

    async def settled(self, store: EventStore, after: Position, limit: int) -> list[RecordedEvent]:
        assert isinstance(store, MemoryEventStore)
        return store.read_settled(after, limit)


def test_no_production_module_imports_the_memory_store() -> None:
    uses = re.compile(
        r"^\s*(from cinderblock\.store\.memory import|import cinderblock\.store\.memory"
        r"|from cinderblock\.store import .*\bmemory\b)",
        re.MULTILINE,
    )
    found = [
        str(path.relative_to(ROOT))
        for top in ("libs", "services", "ops")
        for path in (ROOT / top).rglob("*.py")
        if path.name != "memory.py" and uses.search(path.read_text())
    ]
    assert found == []
