"""ops/bench/group_commit_probe.py: what it makes of the appends it found."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.unit.bench.scripts import load_script


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    return load_script("group_commit_probe")


def test_commands_per_append_and_flushes_per_second(probe: ModuleType) -> None:
    # Four appending transactions: (rows, commands) each; a create is two rows, one command.
    appends = [(2, 1), (6, 3), (10, 5), (20, 11)]
    figures = probe.summarise(appends, {"wal_sync": 8, "wal_write": 10, "commits": 40}, 2.0)
    assert figures["append_transactions"] == 4
    assert figures["append_transactions_per_s"] == 2.0
    assert figures["commands"] == 20
    assert figures["rows"] == 38
    assert figures["commands_per_append"] == 5.0
    assert figures["commands_per_append_p50"] == 4.0  # between 3 and 5
    assert figures["commands_per_append_max"] == 11
    assert figures["rows_per_append"] == 9.5
    assert figures["wal_syncs_per_s"] == 4.0
    assert figures["commits_per_s"] == 20.0


def test_an_idle_window(probe: ModuleType) -> None:
    figures = probe.summarise([], {"wal_sync": 0, "wal_write": 0, "commits": 3}, 1.0)
    assert figures["append_transactions"] == 0
    assert figures["commands_per_append"] == 0
    assert figures["commands_per_append_max"] == 0
