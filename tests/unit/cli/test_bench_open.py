"""The open-loop benchmark's parts: the rates, the schedule, latency from the schedule, the
loop that keeps the schedule whatever the answers, the report."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cinderblock.cli.bench import write_reports
from cinderblock.cli.bench_open import (
    LATE_MS,
    OpenRecorder,
    latency_from_schedule,
    parse_rates,
    render_open,
    run_rate,
    send_times,
    summarize_open,
    verdict,
)
from cinderblock.cli.bench_scenarios import BadStatusError


@pytest.mark.parametrize(
    ("text", "rates"),
    [
        ("100,500,1000,2000", [100.0, 500.0, 1000.0, 2000.0]),
        (" 100 , 2.5 ", [100.0, 2.5]),
        ("1e3", [1000.0]),
        ("500,100", [500.0, 100.0]),  # the order given
    ],
)
def test_parse_rates_reads_comma_separated_positive_numbers(text: str, rates: list[float]) -> None:
    assert parse_rates(text) == rates


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "no rates given"),
        (" , ", "no rates given"),
        ("100,,200", "empty rate"),
        ("100,abc", "'abc' is not a number"),
        ("0", "'0' is not a positive rate"),
        ("100,-5", "'-5' is not a positive rate"),
        ("nan", "'nan' is not a positive rate"),
        ("inf", "'inf' is not a positive rate"),
    ],
)
def test_parse_rates_refuses_bad_input_naming_the_option_and_the_bad_part(
    text: str, named: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_rates(text)
    message = str(exited.value.code)
    assert message.startswith("cinderblock bench: error: argument --open-loop: ")
    assert named in message
    assert "e.g. 100,500,1000,2000" in message


def test_schedule_is_uniform_at_the_rate_inside_the_window() -> None:
    times = send_times(40, 0.5)
    assert len(times) == 20
    assert times[0] == 0.0
    assert all(t < 0.5 for t in times)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
    assert gaps == {0.025}


@pytest.mark.parametrize(
    ("rate", "seconds", "count"),
    [(3, 1.0, 3), (1000, 10.0, 10_000), (0.5, 1.0, 1), (100, 0.0, 0), (2000, 0.25, 500)],
)
def test_schedule_has_rate_times_seconds_requests(rate: float, seconds: float, count: int) -> None:
    assert len(send_times(rate, seconds)) == count


def test_latency_counts_from_the_scheduled_time_not_from_a_late_send() -> None:
    due, sent_late, answered = 10.0, 10.2, 10.25
    assert latency_from_schedule(due, answered) == pytest.approx(0.25)
    assert latency_from_schedule(due, answered) > answered - sent_late


def test_summary_reports_milliseconds_rates_and_every_kind_of_error() -> None:
    rec = OpenRecorder(sent=7, latencies=[0.004, 0.001, 0.003, 0.002], lags=[0.0, 0.002])
    rec.error(BadStatusError("POST /x", 409, "conflict"))
    rec.error(BadStatusError("POST /x", 500, "boom"))
    rec.error(aiohttp.ClientConnectionError("reset"))
    rec.max_in_flight = 3
    result = summarize_open(100.0, rec, window=2.0, cpu_s=0.5, machine=40.0)
    assert (result.offered, result.achieved, result.sent, result.count) == (100.0, 2.0, 7, 4)
    assert (result.errors, result.transport_errors) == (2, 1)
    assert result.statuses == {"409": 1, "500": 1}
    assert (result.p50_ms, result.max_ms) == (2.5, 4.0)
    assert (result.lag_p50_ms, result.lag_max_ms) == (1.0, 2.0)
    assert (result.client_cpu_pct, result.machine_cpu_pct, result.max_in_flight) == (25.0, 40.0, 3)
    assert result.error_samples[0] == "BadStatusError: POST /x -> 409: conflict"


def test_summary_of_nothing_answered_has_no_percentiles() -> None:
    result = summarize_open(100.0, OpenRecorder(sent=5), window=1.0, cpu_s=0.0, machine=None)
    assert (result.count, result.achieved) == (0, 0.0)
    assert result.p50_ms is result.p99_ms is result.lag_p99_ms is None


async def test_the_loop_sends_every_request_due_and_sorts_the_answers() -> None:
    sent: list[int] = []

    async def send(i: int) -> None:
        sent.append(i)
        if i % 5 == 0:
            raise BadStatusError("POST /x", 409, "busy")
        if i % 7 == 0:
            raise aiohttp.ClientConnectionError("reset")

    result = await run_rate(send, rate=40, seconds=0.5, warmup=0.25)
    assert sorted(sent) == list(range(30))  # warm-up and window
    window = range(10, 30)
    assert result.sent == 20
    assert result.errors == sum(1 for i in window if i % 5 == 0)
    assert result.transport_errors == sum(1 for i in window if i % 7 == 0 and i % 5)
    assert result.count + result.errors + result.transport_errors == result.sent
    assert result.statuses == {"409": result.errors}


async def test_the_loop_keeps_sending_while_nothing_is_answered() -> None:
    """Open, not closed: every request leaves on schedule although none has been answered."""
    started = 0
    answer = asyncio.Event()
    due = len(send_times(40, 0.5 + 0.25))

    async def send(i: int) -> None:
        nonlocal started
        started += 1
        if started == due:
            answer.set()
        await answer.wait()

    async with asyncio.timeout(30):  # a closed loop would hang here: fail instead
        result = await run_rate(send, rate=40, seconds=0.5, warmup=0.25)
    assert started == due
    assert result.count == result.sent == 20
    assert result.max_in_flight == 20


def _result(offered: float, **overrides: Any) -> dict[str, Any]:
    rec = OpenRecorder(sent=10, latencies=[0.010, 0.020, 0.030], lags=[0.0001, 0.0002])
    result = summarize_open(offered, rec, window=1.0, cpu_s=0.1, machine=None).__dict__
    return {**result, **overrides}


def _report(*results: dict[str, Any]) -> dict[str, Any]:
    return {
        "started_at": "2026-01-02T03:04:05Z",
        "url": "http://127.0.0.1:18777",
        "action": "os-set_bootable",
        "schedule": "uniform",
        "volumes": 32,
        "connections": 1024,
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
        "git": {"commit": "abc1234", "dirty": True},
        "results": list(results),
        "cleanup_errors": [],
    }


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([_result(1000.0, p99_ms=49.0)], ("49 ms", "met")),
        ([_result(1000.0, p99_ms=50.0)], ("50 ms", "met")),
        ([_result(1000.0, p99_ms=50.1)], ("50.1 ms", "missed")),
        ([_result(1000.0, p99_ms=5.0, errors=3)], ("5 ms", "missed (3 errors)")),
        ([_result(1000.0, p99_ms=5.0, transport_errors=1)], ("5 ms", "missed (1 errors)")),
        ([_result(1000.0, count=0, p99_ms=None)], ("-", "no data")),
        ([_result(500.0)], ("-", "not run (offer 1000)")),
    ],
)
def test_the_target_is_p99_at_1000_per_second(
    results: list[dict[str, Any]], expected: tuple[str, str]
) -> None:
    assert verdict(results) == expected


def test_report_has_the_setting_one_row_per_rate_and_the_target() -> None:
    text = render_open(_report(_result(100.0), _result(1000.0, achieved=990.5)))
    assert "# Cinderblock open-loop benchmark, 2026-01-02T03:04:05Z" in text
    assert "`os-set_bootable` on 32 volumes of one project" in text
    assert "`abc1234` (working tree dirty)" in text
    assert "2 CPUs (Test CPU)" in text
    assert "| 100 | 3 | 10 | 3 | 20 | 28 | 29.8 | 30 | 0 | 0 | 0.2 | 0.2 | 0 | 10 | - |" in text
    assert "| 1000 | 990.5 | 10 |" in text
    assert "| p99 of sync actions at 1,000 actions/s offered (open loop) <= 50 ms " in text
    assert "| 29.8 ms | met |" in text
    lines = text.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| offered")))
    table = lines[header : header + 4]  # header, separator, two rows
    assert table[1] == "|" + " ---: |" * 15
    assert {line.count("|") for line in table} == {16}
    assert "## Errors" not in text
    assert "fell behind" not in text


def test_report_says_when_the_client_fell_behind_or_ran_out_of_connections() -> None:
    late = _result(2000.0, lag_p99_ms=LATE_MS + 1, max_in_flight=1024)
    text = render_open(_report(late))
    assert "at 2000/s the client fell behind its schedule (lag p99 6 ms)" in text
    assert "at 2000/s the client's connection limit was reached" in text


def test_report_lists_errors_with_their_statuses_and_first_bodies() -> None:
    failed = _result(
        500.0,
        errors=2,
        transport_errors=1,
        statuses={"409": 2},
        error_samples=["BadStatusError: boom"],
    )
    text = render_open(_report(failed))
    assert "## Errors" in text
    assert "- 500/s: 2 answers not 200 (2 x 409), 1 without answer\n" in text
    assert "  - `BadStatusError: boom`" in text


def test_report_links_the_plots_and_names_cleanup_failures() -> None:
    report = _report(_result(100.0))
    report["plots"] = {"latency against offered load": "open-20260102T030405Z-latency.png"}
    report["cleanup_errors"] = ["TimeoutError: x"]
    text = render_open(report)
    assert "![latency against offered load](open-20260102T030405Z-latency.png)" in text
    assert "- `TimeoutError: x`" in text


def test_open_reports_are_written_timestamped_and_as_latest_open(tmp_path: Path) -> None:
    report = _report(_result(100.0))
    text = render_open(report)
    written = write_reports(tmp_path, report, prefix="open", latest="latest-open", markdown=text)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "latest-open.json",
        "latest-open.md",
        "open-20260102T030405Z.json",
        "open-20260102T030405Z.md",
    ]
    assert [p.name for p in written] == names[2:]
    assert json.loads((tmp_path / "latest-open.json").read_text()) == report
    assert (tmp_path / "open-20260102T030405Z.md").read_text() == text
