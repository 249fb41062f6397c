"""Driver fixtures: the compliance suites run on every driver built here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from cinderblock.drivers.base import PoolConfig, VolumeDriver
from tests.unit.drivers.given import POOLS, MakeDriver, file_driver, wrapped_file_driver


@pytest.fixture(params=[file_driver, wrapped_file_driver], ids=["file", "fault-injecting"])
def make_driver(request: pytest.FixtureRequest, tmp_path: Path) -> MakeDriver:
    """Builds drivers over one root; a second call is a restarted driver on the same disk."""
    factory: Callable[[Path, Sequence[PoolConfig]], VolumeDriver] = request.param

    def make(pools: Sequence[PoolConfig] = POOLS) -> VolumeDriver:
        return factory(tmp_path / "backend", pools)

    return make


@pytest.fixture
def driver(make_driver: MakeDriver) -> VolumeDriver:
    return make_driver()
