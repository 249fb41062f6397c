"""How many processes `cinderblock dev` and `cinderblock serve api --workers N` start, and
what they refuse before starting anything."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from cinderblock.cli.dev import api_workers, banner, separate_processes, shape
from cinderblock.cli.processes import process_names
from cinderblock.cli.system import SERVICES, run_service
from cinderblock.config.settings import Settings, SettingsError


def test_dev_runs_one_api_worker_per_cpu_but_one_by_default() -> None:
    assert api_workers(None) == max(1, (os.cpu_count() or 1) - 1)
    assert api_workers(3) == 3


@pytest.mark.parametrize(
    ("cpus", "workers", "processes", "separate"),
    [
        (2, None, False, True),  # the default on several CPUs
        (1, None, False, False),  # one CPU: one process
        (8, 1, False, False),  # --workers 1: one process
        (8, 1, True, True),  # --workers 1 --processes
        (1, 2, False, True),  # several api processes are processes
    ],
)
def test_when_the_services_run_as_processes(
    monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int | None, processes: bool, separate: bool
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert separate_processes(workers, processes) is separate
    assert api_workers(workers) == (workers if workers is not None else max(1, cpus - 1))


@pytest.mark.parametrize("workers", [0, -2])
def test_fewer_than_one_worker_is_refused(workers: int) -> None:
    with pytest.raises(SettingsError, match="at least 1"):
        api_workers(workers)
    with pytest.raises(SettingsError, match="at least 1"):
        process_names(SERVICES, workers)


def test_every_consumer_gets_one_process_and_the_api_as_many_as_asked() -> None:
    assert process_names(SERVICES, 1) == [(s, s) for s in SERVICES]
    names = process_names(SERVICES, 3)
    assert names[:3] == [("api-1", "api"), ("api-2", "api"), ("api-3", "api")]
    assert names[3:] == [(s, s) for s in SERVICES if s != "api"]
    assert process_names(("api",), 2) == [("api-1", "api"), ("api-2", "api")]


async def test_workers_are_for_the_api_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(SettingsError, match="serve api"):
        await run_service("relay", settings, stop=asyncio.Event(), workers=2)


def test_the_banner_says_how_the_services_run() -> None:
    identity = {"project_id": "p", "token": "admin:p"}
    assert "every service in this process" in banner("http://h:1", identity, shape(1, False))
    assert "2 api processes sharing the port" in banner("http://h:1", identity, shape(2, False))
    assert "1 api process, every other" in banner("http://h:1", identity, shape(1, True))
