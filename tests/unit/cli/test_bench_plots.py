"""The plots are real PNG files drawn from a report; without matplotlib, a message and none."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from cinderblock.cli.bench import render_markdown
from cinderblock.cli.bench_plots import MISSING, plot_closed_loop, plot_open_loop

PNG = b"\x89PNG\r\n\x1a\n"
MACHINE = {
    "nproc": 2,
    "cpu_model": "Test CPU",
    "ram_gib": 4.0,
    "python": "CPython 3.11.7",
    "kernel": "6.1.0",
    "loadavg": "0.00 0.00 0.00",
}


def _open_report() -> dict[str, Any]:
    results = [
        {"offered": rate, "achieved": achieved, "count": 10, "p50_ms": p50, "p99_ms": p99}
        for rate, achieved, p50, p99 in (
            (100.0, 100.0, 2.1, 6.5),
            (500.0, 499.8, 2.9, 14.0),
            (1000.0, 990.2, 4.4, 48.0),
            (2000.0, 1210.0, 850.0, 2400.0),
            (4000.0, 0.0, None, None),  # nothing answered: not drawn
        )
    ]
    return {
        "started_at": "2026-01-02T03:04:05Z",
        "machine": MACHINE,
        "git": {"commit": "abc1234"},
        "results": results,
    }


def _closed_report() -> dict[str, Any]:
    results = [
        {"scenario": name, "concurrency": c, "count": 10, "rate": rate * (1 if c == 1 else 6)}
        for name, rate in (("get_volume", 300.0), ("set_bootable", 150.0), ("extend_e2e", 40.0))
        for c in (1, 16)
    ]
    results.append({"scenario": "create_e2e", "concurrency": 1, "count": 0, "rate": 0.0})
    return {
        "started_at": "2026-01-02T03:04:05Z",
        "machine": MACHINE,
        "git": {"commit": None},
        "results": results,
    }


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG)
    assert len(data) > 10_000  # axes, lines and text, not an empty canvas


def test_open_loop_plot_is_a_png_of_latency_against_offered_load(tmp_path: Path) -> None:
    written = plot_open_loop(tmp_path / "out", "open-20260102T030405Z", _open_report())
    assert written == {"latency against offered load": "open-20260102T030405Z-latency.png"}
    _assert_png(tmp_path / "out" / "open-20260102T030405Z-latency.png")


def test_closed_loop_plot_is_a_png_of_throughput_against_concurrency(tmp_path: Path) -> None:
    written = plot_closed_loop(tmp_path, "bench-20260102T030405Z", _closed_report())
    assert written == {"throughput against concurrency": "bench-20260102T030405Z-throughput.png"}
    _assert_png(tmp_path / "bench-20260102T030405Z-throughput.png")


def test_plots_of_empty_runs_are_still_written(tmp_path: Path) -> None:
    empty: dict[str, Any] = {**_open_report(), "results": []}
    assert plot_open_loop(tmp_path, "open", empty)
    assert plot_closed_loop(tmp_path, "bench", empty)
    for name in ("open-latency.png", "bench-throughput.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG)


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError


@pytest.mark.usefixtures("no_matplotlib")
def test_without_matplotlib_no_plot_and_a_message_naming_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plot_open_loop(tmp_path, "open", _open_report()) == {}
    assert plot_closed_loop(tmp_path, "bench", _closed_report()) == {}
    assert list(tmp_path.iterdir()) == []
    err = capsys.readouterr().err
    assert MISSING in err
    assert "pip install 'cinderblock[bench]'" in err


def test_the_closed_loop_report_links_its_plots() -> None:
    report = {
        "started_at": "2026-01-02T03:04:05Z",
        "url": "http://127.0.0.1:18777",
        "seconds": 10.0,
        "warmup": 2.0,
        "machine": MACHINE,
        "git": {"commit": "abc1234", "dirty": False},
        "results": [],
        "plots": {"throughput against concurrency": "bench-20260102T030405Z-throughput.png"},
    }
    text = render_markdown(report)
    assert "## Plots" in text
    assert "![throughput against concurrency](bench-20260102T030405Z-throughput.png)" in text
    assert "## Plots" not in render_markdown({**report, "plots": {}})
