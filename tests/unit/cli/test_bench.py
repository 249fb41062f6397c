"""The benchmark's pure parts: percentiles, summaries, the bar, the Markdown report."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from cinderblock.cli.bench import (
    BARS,
    ERROR_SAMPLES,
    BadStatusError,
    Bar,
    Recorder,
    busy_pct,
    cpu_jiffies,
    lag_summary,
    machine_facts,
    percentile,
    render_markdown,
    summarize,
    write_reports,
)


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 50) is None


def test_percentile_of_one_value_is_that_value() -> None:
    assert [percentile([7.0], q) for q in (0, 50, 99, 100)] == [7.0, 7.0, 7.0, 7.0]


def test_percentile_ends_are_min_and_max() -> None:
    values = [1.0, 2.0, 3.0, 10.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 10.0


@pytest.mark.parametrize(("q", "expected"), [(50, 2.5), (25, 1.75), (90, 7.9)])
def test_percentile_interpolates_between_closest_ranks(q: float, expected: float) -> None:
    assert percentile([1.0, 2.0, 3.0, 10.0], q) == pytest.approx(expected)


def test_percentile_agrees_with_the_standard_library() -> None:
    values = sorted(float((i * 37) % 101) for i in range(1, 200))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for q in (1, 10, 50, 90, 99):
        assert percentile(values, q) == pytest.approx(cuts[q - 1])


def test_summarize_reports_milliseconds_and_rate() -> None:
    rec = Recorder(latencies=[0.004, 0.001, 0.003, 0.002])
    result = summarize("get_volume", 16, rec, window=2.0, cpu_s=0.5)
    assert (result.count, result.rate, result.errors) == (4, 2.0, 0)
    assert (result.p50_ms, result.max_ms) == (2.5, 4.0)
    assert result.client_cpu_pct == 25.0


def test_summarize_of_no_operations_has_no_percentiles() -> None:
    result = summarize("create_e2e", 1, Recorder(), window=1.0, cpu_s=0.0)
    assert (result.count, result.rate) == (0, 0.0)
    assert result.p50_ms is result.p99_ms is result.max_ms is None


def test_recorder_counts_every_error_but_keeps_only_the_first_bodies() -> None:
    rec = Recorder()
    for i in range(ERROR_SAMPLES + 3):
        rec.error(BadStatusError("GET /x", 500, f"body {i}"))
    assert rec.errors == ERROR_SAMPLES + 3
    assert len(rec.samples) == ERROR_SAMPLES
    assert rec.samples[0] == "BadStatusError: GET /x -> 500: body 0"


def _result(scenario: str, concurrency: int, **overrides: Any) -> dict[str, Any]:
    rec = Recorder(latencies=[0.010, 0.020, 0.030])
    result = asdict(summarize(scenario, concurrency, rec, window=1.0, cpu_s=0.1))
    result.update(overrides)
    return result


def _report(*results: dict[str, Any]) -> dict[str, Any]:
    return {
        "started_at": "2026-01-02T03:04:05Z",
        "url": "http://127.0.0.1:18777",
        "seconds": 10.0,
        "warmup": 2.0,
        "machine": {
            "nproc": 2,
            "cpu_model": "Test CPU",
            "ram_gib": 4.0,
            "python": "CPython 3.11.7",
            "kernel": "6.1.0",
            "loadavg": "0.00 0.00 0.00",
        },
        "git": {"commit": "abc1234", "dirty": False},
        "results": list(results),
    }


@pytest.mark.parametrize(
    ("bar", "value", "verdict"),
    [
        (Bar("g", 16, "rate", 670), 670.0, "met"),
        (Bar("g", 16, "rate", 670), 669.9, "missed"),
        (Bar("s", 16, "rate", 650, 900), 700.0, "met (low end)"),
        (Bar("s", 16, "rate", 650, 900), 900.0, "met"),
        (Bar("e", 1, "p50_ms", 30), 29.9, "met"),
        (Bar("e", 1, "p50_ms", 30), 30.0, "missed"),
    ],
)
def test_bar_verdicts(bar: Bar, value: float, verdict: str) -> None:
    assert bar.verdict({"count": 1, bar.metric: value}) == verdict


def test_bar_without_data_says_so() -> None:
    assert BARS[0].verdict({"count": 0, "rate": 0.0}) == "no data"


def test_markdown_has_machine_commit_and_one_row_per_result() -> None:
    text = render_markdown(_report(_result("get_volume", 1), _result("get_volume", 16)))
    assert "2 CPUs (Test CPU), 4 GiB RAM, Linux 6.1.0, Python CPython 3.11.7" in text
    assert "`abc1234`" in text
    assert "dirty" not in text
    assert "| get_volume | 1 | 3 | 3 | 20 | 28 | 29.8 | 30 | 0 | 10 | - |" in text
    assert "| get_volume | 16 | 3 | 3 | 20 |" in text


def test_markdown_shows_machine_cpu_when_known() -> None:
    text = render_markdown(_report(_result("get_volume", 16, machine_cpu_pct=91.5)))
    assert "| 0 | 10 | 91.5 |" in text


def test_markdown_table_rows_have_as_many_cells_as_the_header() -> None:
    text = render_markdown(_report(_result("get_volume", 1), _result("create_e2e", 1)))
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len({line.count("|") for line in table[:4]}) == 1


def test_markdown_judges_the_bar_for_the_results_present() -> None:
    results = [_result("get_volume", 16, rate=1000.0), _result("extend_e2e", 1, p50_ms=45.0)]
    text = render_markdown(_report(*results))
    assert "| get_volume c=16: >= 670 ops/s (10x Cinder's ~67) | 1000 ops/s | met |" in text
    assert "| extend_e2e c=1: p50 < 30 ms (Cinder ~120-150) | 45 ms | missed |" in text
    assert "set_bootable c=16" not in text


def test_markdown_lists_errors_with_their_first_bodies() -> None:
    failed = _result("set_bootable", 16, errors=2, error_samples=["BadStatusError: boom"])
    text = render_markdown(_report(_result("get_volume", 1), failed))
    assert "## Errors" in text
    assert "- set_bootable c=16: 2 errors\n  - `BadStatusError: boom`" in text


def test_markdown_without_errors_has_no_error_section() -> None:
    assert "## Errors" not in render_markdown(_report(_result("get_volume", 1)))


def test_markdown_shows_missing_percentiles_as_a_dash() -> None:
    empty = _result("create_e2e", 1, count=0, p50_ms=None, p90_ms=None, p99_ms=None)
    assert "| create_e2e | 1 | 0 | 3 | - | - |" in render_markdown(_report(empty))


def test_reports_are_written_timestamped_and_as_latest(tmp_path: Path) -> None:
    report = _report(_result("get_volume", 1))
    written = write_reports(tmp_path / "out", report)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "bench-20260102T030405Z.json",
        "bench-20260102T030405Z.md",
        "latest.json",
        "latest.md",
    ]
    assert [p.name for p in written] == names[:2]
    assert json.loads((tmp_path / "out" / "latest.json").read_text()) == report
    assert (tmp_path / "out" / "latest.md").read_text() == render_markdown(report)


def test_busy_pct_is_the_busy_share_of_the_jiffies_between_two_marks() -> None:
    assert busy_pct((100, 1000), (250, 1200)) == 75.0
    assert busy_pct(None, (250, 1200)) is None
    assert busy_pct((100, 1000), (100, 1000)) is None


def test_cpu_jiffies_count_busy_within_total() -> None:
    marks = cpu_jiffies()
    if marks is not None:  # Linux
        busy, total = marks
        assert 0 <= busy <= total


def test_machine_facts_name_the_machine() -> None:
    facts = machine_facts()
    assert facts["nproc"] >= 1
    assert set(facts) == {"nproc", "cpu_model", "ram_gib", "python", "kernel", "loadavg"}


def test_lag_summary_is_milliseconds_per_consumer() -> None:
    summary = lag_summary({"relay": [0.0, 0.010, 0.002], "sagas": []})
    assert summary["relay"] == {"p50": 2.0, "p99": 9.8, "max": 10.0}
    assert summary["sagas"] == {"p50": None, "p99": None, "max": None}


def test_markdown_has_a_lag_table_only_when_lag_was_measured() -> None:
    report = _report(_result("set_bootable", 16))
    assert "Consumer lag" not in render_markdown(report)
    report["results"][0]["lag_ms"] = {"relay": {"p50": 1.0, "p99": 2.5, "max": 3.0}}
    text = render_markdown(report)
    assert "Consumer lag" in text
    assert "| 2.5 (3) |" in text
