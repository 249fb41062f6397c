"""The command service on the in-memory event store: what every test of tests/unit/store
starts from (no PostgreSQL, no NATS)."""

from __future__ import annotations

import pytest

from tests.helpers.commands import Service, service_on


@pytest.fixture
def service() -> Service:
    return service_on()
