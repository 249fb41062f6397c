"""`cinderblock bench --open-loop RATES`: latency at fixed offered rates of a sync action.

A closed loop (`bench.py`) sends the next request when the last one is answered, so a slow
server is offered less and its queueing never shows ("coordinated omission"). Here requests
leave on a fixed schedule whatever the answers' speed, as many independent clients make
them: at rate r, request i is due at i / r seconds (uniform spacing: the offered rate is
exactly r over any second, and a run is repeatable; Poisson arrivals would add bursts of
their own to what is measured). Latency counts from the *scheduled* send time, so time a
request spent waiting for the client (its event loop, a free connection) counts as the
server's queueing would. The client's own delay, scheduled to actual send, is reported as
its lag: when that grows the client could not keep the schedule and the rate was not
fully offered.

The action is `os-set_bootable` (synchronous, answers 200), toggled on a pool of volumes in
ONE project, as Terraform or Nova hammer one project; request i goes to volume i mod pool.
Each rate runs a short warm-up at that rate first; only requests due inside the measured
window count.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from cinderblock.cli.bench import (
    ERROR_SAMPLES,
    Usage,
    busy_pct,
    check_reachable,
    fmt,
    git_facts,
    machine_facts,
    percentile,
    plot_lines,
    report_stem,
    setting_lines,
    utc_stamp,
    warmup_for,
    write_reports,
)
from cinderblock.cli.bench_scenarios import FAILURES, Api, BadStatusError, available

__all__ = ["parse_rates", "run_open_loop_bench", "run_rate", "send_times"]

POOL = 32  # volumes in the one project
CONNECTIONS = 1024  # the client's connection limit: far above what 2,000/s at 50 ms needs
SETUP_CONCURRENCY = 8
LATE_MS = 5.0  # lag p99 above this: the client did not keep its schedule
TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0
TARGET_TEXT = "p99 of sync actions at 1,000 actions/s offered (open loop) <= 50 ms"
RATES_HELP = "rates are positive numbers of actions/s, comma-separated, e.g. 100,500,1000,2000"

Send = Callable[[int], Awaitable[None]]


def parse_rates(text: str) -> list[float]:
    """`"100,500,1e3"` -> `[100.0, 500.0, 1000.0]`, in the order given; anything else exits
    with an argparse-style message naming the bad part."""

    def bad(why: str) -> SystemExit:
        return SystemExit(f"cinderblock bench: error: argument --open-loop: {why} ({RATES_HELP})")

    parts = [p.strip() for p in (text or "").split(",")]
    if not any(parts):
        raise bad("no rates given")
    rates = []
    for part in parts:
        if not part:
            raise bad(f"empty rate in {text!r}")
        try:
            rate = float(part)
        except ValueError:
            raise bad(f"{part!r} is not a number") from None
        if not math.isfinite(rate) or rate <= 0:
            raise bad(f"{part!r} is not a positive rate")
        rates.append(rate)
    return rates


def send_times(rate: float, seconds: float) -> list[float]:
    """The uniform schedule: offsets (s) from the start of every request due in [0, seconds)
    at `rate` per second."""
    count = math.ceil(rate * seconds - 1e-9)
    return [i / rate for i in range(max(0, count))]


def latency_from_schedule(due: float, done: float) -> float:
    """What the caller waited: from when the request was due (not when it left) to its answer."""
    return done - due


@dataclass
class OpenRecorder:
    """What happened to the requests due inside the measured window."""

    sent: int = 0
    latencies: list[float] = field(default_factory=list)  # s, from the schedule, 200s only
    lags: list[float] = field(default_factory=list)  # s, scheduled to actual send, all
    statuses: Counter[int] = field(default_factory=Counter)  # answers other than 200
    transport: int = 0  # no answer: connection failures, timeouts, broken bodies
    samples: list[str] = field(default_factory=list)
    last_done: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0

    def error(self, err: BaseException) -> None:
        if isinstance(err, BadStatusError):
            self.statuses[err.status] += 1
        else:
            self.transport += 1
        if len(self.samples) < ERROR_SAMPLES:
            self.samples.append(f"{type(err).__name__}: {err}")


@dataclass
class OpenResult:
    offered: float  # actions/s
    achieved: float  # answers 200 per second over the window (extended to the last answer)
    sent: int  # requests due in the window
    count: int  # of them answered 200
    errors: int  # answered, but not 200
    transport_errors: int  # not answered
    window_s: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    lag_p50_ms: float | None
    lag_p99_ms: float | None
    lag_max_ms: float | None
    max_in_flight: int
    client_cpu_pct: float
    machine_cpu_pct: float | None
    statuses: dict[str, int]
    error_samples: list[str]


def summarize_open(
    offered: float, rec: OpenRecorder, window: float, cpu_s: float, machine: float | None
) -> OpenResult:
    def ms(values: list[float], q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value * 1000, 2)

    latencies, lags = sorted(rec.latencies), sorted(rec.lags)
    return OpenResult(
        offered=offered,
        achieved=round(len(latencies) / window, 1) if window > 0 else 0.0,
        sent=rec.sent,
        count=len(latencies),
        errors=sum(rec.statuses.values()),
        transport_errors=rec.transport,
        window_s=round(window, 3),
        p50_ms=ms(latencies, 50),
        p90_ms=ms(latencies, 90),
        p99_ms=ms(latencies, 99),
        max_ms=ms(latencies, 100),
        lag_p50_ms=ms(lags, 50),
        lag_p99_ms=ms(lags, 99),
        lag_max_ms=ms(lags, 100),
        max_in_flight=rec.max_in_flight,
        client_cpu_pct=round(100 * cpu_s / window, 1) if window > 0 else 0.0,
        machine_cpu_pct=machine,
        statuses={str(k): v for k, v in sorted(rec.statuses.items())},
        error_samples=rec.samples,
    )


async def run_rate(send: Send, rate: float, seconds: float, warmup: float) -> OpenResult:
    """Offer `rate` requests/s for `warmup + seconds` on the uniform schedule, each by
    `send(i)` (which raises BadStatusError for an answer other than 200, one of FAILURES
    when there is none); the requests due after the warm-up are the result."""
    rec = OpenRecorder()
    usage = Usage()
    tasks: set[asyncio.Task[None]] = set()

    async def fire(i: int, due: float, measured: bool) -> None:
        if measured:
            rec.lags.append(time.perf_counter() - due)
            rec.in_flight += 1
            rec.max_in_flight = max(rec.max_in_flight, rec.in_flight)
        try:
            await send(i)
        except FAILURES as err:
            if measured:
                rec.error(err)
            return
        finally:
            if measured:
                rec.in_flight -= 1
        if measured:
            done = time.perf_counter()
            rec.latencies.append(latency_from_schedule(due, done))
            rec.last_done = max(rec.last_done, done)

    start = time.perf_counter()
    window_start = start + warmup
    try:
        for i, offset in enumerate(send_times(rate, warmup + seconds)):
            due = start + offset
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            measured = offset >= warmup
            if measured and not rec.sent:
                usage.mark()
            if measured:
                rec.sent += 1
            task = asyncio.create_task(fire(i, due, measured))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    finally:  # interrupted: nothing of this rate goes on in the background
        for task in tasks:
            task.cancel()
    usage.mark()
    window = max(seconds, rec.last_done - window_start)
    cpu_s = usage.process[-1] - usage.process[0]
    return summarize_open(rate, rec, window, cpu_s, busy_pct(usage.machine[0], usage.machine[-1]))


class VolumePool:
    """`size` available volumes in one fresh project with unlimited quotas, and the
    os-set_bootable requests that toggle them in turn."""

    def __init__(self, session: aiohttp.ClientSession, url: str, size: int = POOL) -> None:
        self.api = Api(session, url)
        self.session = session
        self.size = size
        self.volumes: list[str] = []
        self.headers = {**self.api.headers, "Content-Type": "application/json"}

    async def setup(self) -> None:
        project = self.api.project
        unlimited = {"quota_set": {"volumes": -1, "gigabytes": -1}}
        await self.api.call("PUT", f"/os-quota-sets/{project}", (200,), unlimited, root=True)
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one() -> None:
            async with gate:
                volume = await self.api.create()
                self.volumes.append(volume)  # deleted at the end even if it never settles
                await self.api.wait_for(volume, available)

        await asyncio.gather(*(one() for _ in range(self.size)))
        self.bodies = [
            json.dumps({"os-set_bootable": {"bootable": flag}}).encode() for flag in (True, False)
        ]
        self.urls = [f"{self.api.base}/{v}/action" for v in self.volumes]

    async def send(self, i: int) -> None:
        """Request i: volume i mod pool, bootable true and false in turn on each volume."""
        n = len(self.urls)
        body = self.bodies[(i // n) % 2]
        async with self.session.post(self.urls[i % n], data=body, headers=self.headers) as resp:
            data = await resp.read()
        if resp.status != 200:
            text = data.decode(errors="replace")[:300]
            raise BadStatusError("POST /volumes/{id}/action", resp.status, text)

    async def teardown(self) -> list[str]:
        """Delete every volume made (waiting for the 404s); what went wrong doing it."""
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one(volume: str) -> None:
            async with gate:
                await self.api.delete(volume)

        volumes, self.volumes = self.volumes, []
        outcomes = await asyncio.gather(*(one(v) for v in volumes), return_exceptions=True)
        return [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]


def verdict(results: list[dict[str, Any]]) -> tuple[str, str]:
    """The target at 1,000 actions/s: (measured, verdict). Any error at that rate misses it:
    fast failures must not pass for fast answers."""
    at = [r for r in results if r["offered"] == TARGET_RATE]
    if not at:
        return "-", "not run (offer 1000)"
    r = at[0]
    if not r["count"] or r["p99_ms"] is None:
        return "-", "no data"
    measured = f"{fmt(r['p99_ms'])} ms"
    failed = r["errors"] + r["transport_errors"]
    if failed:
        return measured, f"missed ({failed} errors)"
    return measured, "met" if r["p99_ms"] <= TARGET_P99_MS else "missed"


def render_open(report: dict[str, Any]) -> str:
    """The open-loop report as Markdown."""
    lines = [
        f"# Cinderblock open-loop benchmark, {report['started_at']}",
        "",
        f"- target: `{report['url']}`; `os-set_bootable` on {report['volumes']} volumes of one "
        f"project; {report['seconds']:g} s per rate after {report['warmup']:g} s warm-up at "
        "that rate",
        "- open loop: requests due at uniform intervals whatever the answers' speed; latency "
        "from the scheduled send time (queueing in the client counts); lag = scheduled to "
        f"actual send; client connection limit {report['connections']}",
        *setting_lines(report),
        "",
        "| offered /s | achieved /s | due | 200 | p50 ms | p90 ms | p99 ms | max ms | non-200 "
        "| no answer | lag p99 ms | lag max ms | max in flight | client CPU % | machine CPU % |",
        "|" + " ---: |" * 15,
    ]
    for r in report["results"]:
        cells = [r["offered"], r["achieved"], r["sent"], r["count"], r["p50_ms"], r["p90_ms"]]
        cells += [r["p99_ms"], r["max_ms"], r["errors"], r["transport_errors"], r["lag_p99_ms"]]
        cells += [r["lag_max_ms"], r["max_in_flight"], r["client_cpu_pct"], r["machine_cpu_pct"]]
        lines.append("| " + " | ".join(fmt(c) for c in cells) + " |")
    measured, judged = verdict(report["results"])
    lines += ["", "| target | measured | verdict |", "| --- | ---: | --- |"]
    lines.append(f"| {TARGET_TEXT} | {measured} | {judged} |")
    behind = [r for r in report["results"] if (r["lag_p99_ms"] or 0) > LATE_MS]
    full = [r for r in report["results"] if r["max_in_flight"] >= report["connections"]]
    if behind or full:
        lines.append("")
    for r in behind:
        lines.append(
            f"- at {fmt(r['offered'])}/s the client fell behind its schedule (lag p99 "
            f"{fmt(r['lag_p99_ms'])} ms): less than that was offered; the latencies include "
            "the delay"
        )
    for r in full:
        lines.append(
            f"- at {fmt(r['offered'])}/s the client's connection limit was reached: requests "
            "waited for a connection (counted in their latency)"
        )
    failed = [r for r in report["results"] if r["errors"] or r["transport_errors"]]
    if failed:
        lines += ["", "## Errors", ""]
        for r in failed:
            answers = ", ".join(f"{n} x {code}" for code, n in r["statuses"].items())
            lines.append(
                f"- {fmt(r['offered'])}/s: {r['errors']} answers not 200"
                f"{f' ({answers})' if answers else ''}, {r['transport_errors']} without answer"
            )
            lines += [f"  - `{s}`" for s in r["error_samples"]]
    if report.get("cleanup_errors"):
        lines += ["", "Cleanup failed for some volumes:", ""]
        lines += [f"- `{e}`" for e in report["cleanup_errors"]]
    lines += plot_lines(report)
    return "\n".join(lines) + "\n"


def _line(r: OpenResult) -> str:
    return (
        f"offered {r.offered:8g}/s  achieved {r.achieved:8.1f}/s  {r.count}/{r.sent} ok  "
        f"p50 {fmt(r.p50_ms)}  p90 {fmt(r.p90_ms)}  p99 {fmt(r.p99_ms)}  "
        f"max {fmt(r.max_ms)} ms  errors {r.errors}+{r.transport_errors}  "
        f"lag p99 {fmt(r.lag_p99_ms)} ms  CPU client {r.client_cpu_pct:g}% "
        f"machine {fmt(r.machine_cpu_pct)}%"
    )


async def run_open_loop_bench(
    url: str, *, rates: list[float], seconds: float, out: Path, plots: bool = False
) -> None:
    """Offer each rate in turn to the API at `url`; print the Markdown report and write it
    (`open-<UTC>.{json,md}`, `latest-open.{json,md}`, and with `plots` the PNG) under `out`."""
    started = utc_stamp()
    machine, git = await asyncio.gather(
        asyncio.to_thread(machine_facts), asyncio.to_thread(git_facts)
    )
    warmup = warmup_for(seconds)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=30)
    results: list[OpenResult] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await check_reachable(session, url)
        pool = VolumePool(session, url)
        print(
            f"Open loop against {url}: {', '.join(f'{r:g}' for r in rates)} actions/s, "
            f"{seconds:g} s each after {warmup:g} s warm-up; {pool.size} volumes in project "
            f"{pool.api.project}",
            flush=True,
        )
        try:
            try:
                await pool.setup()
            except FAILURES as err:
                raise SystemExit(
                    f"cinderblock bench: could not make {pool.size} volumes: {err}"
                ) from err
            for rate in rates:
                result = await run_rate(pool.send, rate, seconds, warmup)
                results.append(result)
                print(_line(result), flush=True)
        finally:  # delete what was made, also when interrupted
            cleanup_errors = await pool.teardown()
    report: dict[str, Any] = {
        "started_at": started,
        "url": url,
        "action": "os-set_bootable",
        "schedule": "uniform",
        "volumes": pool.size,
        "connections": CONNECTIONS,
        "seconds": seconds,
        "warmup": warmup,
        "machine": machine,
        "git": git,
        "results": [asdict(r) for r in results],
        "cleanup_errors": cleanup_errors,
    }
    if plots:
        from cinderblock.cli.bench_plots import plot_open_loop

        report["plots"] = await asyncio.to_thread(
            plot_open_loop, out, report_stem(report, "open"), report
        )
    text = render_open(report)
    written = await asyncio.to_thread(
        write_reports, out, report, prefix="open", latest="latest-open", markdown=text
    )
    print(text, flush=True)
    print("Written: " + ", ".join(str(p) for p in written) + f" and {out}/latest-open.{{json,md}}")
