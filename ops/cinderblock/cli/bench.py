"""`cinderblock bench`: latency and throughput of a running Cinderblock, over HTTP.

Every scenario runs at each concurrency: N workers, each with its own project (quotas are
per project) and its own volume, loop for `seconds` after a short warm-up. Only operations
started inside the measured window count. Any status other than the expected one is an
error: counted, its first bodies kept, and the worker recovers with a fresh volume.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from cinderblock.cli.bench_scenarios import (
    FAILURES,
    SCENARIOS,
    Api,
    BadStatusError,
    Scenario,
)
from cinderblock.cli.lag import LagProbe

__all__ = ["BadStatusError", "run_bench"]

CONCURRENCIES = (1, 16)
ERROR_SAMPLES = 5
PROGRESS_EVERY = 5.0


@dataclass
class Recorder:
    start: float = 0.0
    end: float = float("inf")
    latencies: list[float] = field(default_factory=list)
    last_done: float = 0.0
    errors: int = 0
    samples: list[str] = field(default_factory=list)

    def error(self, err: BaseException) -> None:
        self.errors += 1
        if len(self.samples) < ERROR_SAMPLES:
            self.samples.append(f"{type(err).__name__}: {err}")


@dataclass
class Result:
    scenario: str
    concurrency: int
    count: int
    errors: int
    window_s: float
    rate: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    client_cpu_pct: float  # the bench's own CPU time over the window, % of one core
    machine_cpu_pct: float | None  # every core's busy time over the window, % of all cores
    error_samples: list[str]
    # Consumer lag over the window (with --lag): per consumer, p50/p99/max in ms.
    lag_ms: dict[str, dict[str, float | None]] | None = None


def percentile(ordered: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) of sorted values, interpolating between closest ranks."""
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(
    scenario: str,
    concurrency: int,
    rec: Recorder,
    window: float,
    cpu_s: float,
    machine_pct: float | None = None,
) -> Result:
    ordered = sorted(rec.latencies)

    def ms(q: float) -> float | None:
        value = percentile(ordered, q)
        return None if value is None else round(value * 1000, 2)

    return Result(
        scenario=scenario,
        concurrency=concurrency,
        count=len(ordered),
        errors=rec.errors,
        window_s=round(window, 3),
        rate=round(len(ordered) / window, 1) if window > 0 else 0.0,
        p50_ms=ms(50),
        p90_ms=ms(90),
        p99_ms=ms(99),
        max_ms=ms(100),
        client_cpu_pct=round(100 * cpu_s / window, 1) if window > 0 else 0.0,
        machine_cpu_pct=machine_pct,
        error_samples=rec.samples,
    )


async def _worker(scenario: Scenario, rec: Recorder) -> None:
    while (started := time.perf_counter()) < rec.end:
        try:
            if scenario.needs_volume and scenario.volume is None:
                await scenario.setup()  # after a failure: a fresh volume, untimed
                continue
            latency = await scenario.op()
        except FAILURES as err:
            rec.error(err)
            await asyncio.sleep(0.05)
            try:
                await scenario.teardown()
            except FAILURES as again:
                rec.error(again)
            scenario.volume = None
            continue
        if started >= rec.start:
            rec.latencies.append(latency)
            rec.last_done = time.perf_counter()


def warmup_for(seconds: float) -> float:
    return min(2.0, max(0.5, seconds / 5))


def cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores so far, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(values) - sum(values[3:5]), sum(values)  # idle and iowait are not busy


def busy_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100 * (after[0] - before[0]) / (after[1] - before[1]), 1)


@dataclass
class Usage:
    """CPU use over the measured window: the bench process's, and the whole machine's."""

    process: list[float] = field(default_factory=list)
    machine: list[tuple[int, int] | None] = field(default_factory=list)

    def mark(self) -> None:
        self.process.append(time.process_time())
        self.machine.append(cpu_jiffies())


async def _progress(label: str, rec: Recorder, usage: Usage) -> None:
    """Marks CPU use at both ends of the window and prints a line every few seconds."""
    await asyncio.sleep(max(0.0, rec.start - time.perf_counter()))
    usage.mark()
    while rec.end - time.perf_counter() > PROGRESS_EVERY + 1:
        await asyncio.sleep(PROGRESS_EVERY)
        elapsed = time.perf_counter() - rec.start
        print(
            f"  .. {label} {elapsed:5.1f}s  {len(rec.latencies)} ops  {rec.errors} errors",
            flush=True,
        )
    await asyncio.sleep(max(0.0, rec.end - time.perf_counter()))
    usage.mark()


def lag_summary(samples: dict[str, list[float]]) -> dict[str, dict[str, float | None]]:
    """Per consumer, p50/p99/max of its lag samples (seconds) in milliseconds."""
    out: dict[str, dict[str, float | None]] = {}
    for consumer, values in sorted(samples.items()):
        ordered = sorted(values)
        out[consumer] = {
            q: None if (v := percentile(ordered, n)) is None else round(v * 1000, 1)
            for q, n in (("p50", 50), ("p99", 99), ("max", 100))
        }
    return out


async def _probe_window(probe: LagProbe, rec: Recorder) -> None:
    await asyncio.sleep(max(0.0, rec.start - time.perf_counter()))
    stop = asyncio.Event()
    sampler = asyncio.create_task(probe.run(stop))
    await asyncio.sleep(max(0.0, rec.end - time.perf_counter()))
    stop.set()
    await sampler


async def run_one(
    session: aiohttp.ClientSession,
    url: str,
    kind: type[Scenario],
    concurrency: int,
    seconds: float,
    probe: LagProbe | None = None,
) -> Result:
    scenarios = [kind(Api(session, url)) for _ in range(concurrency)]
    rec = Recorder()
    for outcome in await asyncio.gather(*(s.setup() for s in scenarios), return_exceptions=True):
        if isinstance(outcome, BaseException):
            rec.error(outcome)
    rec.start = time.perf_counter() + warmup_for(seconds)
    rec.end = rec.start + seconds
    usage = Usage()
    progress = asyncio.create_task(_progress(f"{kind.name} c={concurrency}", rec, usage))
    lagging = asyncio.create_task(_probe_window(probe, rec)) if probe is not None else None
    try:
        await asyncio.gather(*(_worker(s, rec) for s in scenarios))
        await progress
        if lagging is not None:
            await lagging
    finally:  # delete what was created, also when interrupted
        progress.cancel()
        if lagging is not None:
            lagging.cancel()
        teardowns = [s.teardown() for s in scenarios]
        for outcome in await asyncio.gather(*teardowns, return_exceptions=True):
            if isinstance(outcome, BaseException):
                rec.error(outcome)
    window = max(rec.end, rec.last_done) - rec.start
    cpu_s = usage.process[-1] - usage.process[0]
    machine = busy_pct(usage.machine[0], usage.machine[-1])
    result = summarize(kind.name, concurrency, rec, window, cpu_s, machine)
    if probe is not None:
        result.lag_ms = lag_summary(probe.take())
    return result


@dataclass(frozen=True)
class Bar:
    """One line of the bar: `metric` of (scenario, concurrency) against a threshold."""

    scenario: str
    concurrency: int
    metric: str  # "rate" (higher is better) or "p50_ms" (lower is better)
    low: float  # for rate: the minimum; for p50_ms: the maximum (exclusive)
    high: float | None = None  # rate only: the top of a range; between low and high is partial
    text: str = ""

    def verdict(self, result: dict[str, Any]) -> str:
        value = result.get(self.metric)
        if value is None or result.get("count", 0) == 0:
            return "no data"
        if self.metric != "rate":
            return "met" if value < self.low else "missed"
        if value < self.low:
            return "missed"
        return "met" if self.high is None or value >= self.high else "met (low end)"


BARS = (
    Bar("get_volume", 16, "rate", 670, text=">= 670 ops/s (10x Cinder's ~67)"),
    Bar("set_bootable", 16, "rate", 650, 900, text=">= 650-900 ops/s (10x Cinder's ~65-90)"),
    Bar("extend_e2e", 1, "p50_ms", 30, text="p50 < 30 ms (Cinder ~120-150)"),
    Bar("create_e2e", 1, "p50_ms", 30, text="p50 < 30 ms (Cinder ~300)"),
)


def fmt(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _lag_table(results: list[dict[str, Any]]) -> list[str]:
    """Consumer lag (ms) per scenario: p99 (max) per consumer, when it was measured."""
    measured = [r for r in results if r.get("lag_ms")]
    if not measured:
        return []
    consumers = sorted({c for r in measured for c in r["lag_ms"]})
    lines = [
        "",
        "Consumer lag during each run, ms, p99 (max); JetStream durables are upper bounds "
        "(see `ops/cinderblock/cli/lag.py`):",
        "",
        "| scenario | conc | " + " | ".join(consumers) + " |",
        "| --- | ---: |" + " ---: |" * len(consumers),
    ]
    for r in measured:
        cells = []
        for c in consumers:
            lag = r["lag_ms"].get(c)
            cells.append("-" if not lag else f"{fmt(lag['p99'])} ({fmt(lag['max'])})")
        lines.append(f"| {r['scenario']} | {r['concurrency']} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: machine, results table, the bar, errors."""
    lines = [
        f"# Cinderblock benchmark, {report['started_at']}",
        "",
        f"- target: `{report['url']}`, {report['seconds']:g} s per run after "
        f"{report['warmup']:g} s warm-up",
        *setting_lines(report),
        "",
        "| scenario | conc | count | ops/s | p50 ms | p90 ms | p99 ms | max ms | errors "
        "| client CPU % | machine CPU % |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        cells = [r["scenario"], r["concurrency"], r["count"], r["rate"], r["p50_ms"]]
        cells += [r["p90_ms"], r["p99_ms"], r["max_ms"], r["errors"], r["client_cpu_pct"]]
        cells.append(r.get("machine_cpu_pct"))
        lines.append("| " + " | ".join(fmt(c) for c in cells) + " |")
    index = {(r["scenario"], r["concurrency"]): r for r in report["results"]}
    bars = [
        (b, index[b.scenario, b.concurrency]) for b in BARS if (b.scenario, b.concurrency) in index
    ]
    if bars:
        lines += ["", "| bar | measured | verdict |", "| --- | ---: | --- |"]
        for bar, r in bars:
            unit = "ops/s" if bar.metric == "rate" else "ms"
            measured = f"{fmt(r[bar.metric])} {unit}"
            lines.append(
                f"| {bar.scenario} c={bar.concurrency}: {bar.text} "
                f"| {measured} | {bar.verdict(r)} |"
            )
    lines += _lag_table(report["results"])
    failed = [r for r in report["results"] if r["errors"]]
    if failed:
        lines += ["", "## Errors", ""]
        for r in failed:
            lines.append(f"- {r['scenario']} c={r['concurrency']}: {r['errors']} errors")
            lines += [f"  - `{s}`" for s in r["error_samples"]]
    lines += plot_lines(report)
    return "\n".join(lines) + "\n"


def setting_lines(report: dict[str, Any]) -> list[str]:
    """The report's commit and machine, as Markdown list items (every bench report has them)."""
    machine, git = report["machine"], report["git"]
    commit = git.get("commit") or "unknown"
    return [
        f"- commit: `{commit}`{' (working tree dirty)' if git.get('dirty') else ''}",
        f"- machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{fmt(machine['ram_gib'])} GiB RAM, Linux {machine['kernel']}, "
        f"Python {machine['python']}, load average at start {machine['loadavg']}",
        "- client and server share the machine: client CPU is the bench's own CPU time, in % of "
        "one core; machine CPU is every core's busy time, in % of all cores",
    ]


def plot_lines(report: dict[str, Any]) -> list[str]:
    """Links to the plots written beside the report (`--plots`), if any."""
    plots = report.get("plots") or {}
    if not plots:
        return []
    return ["", "## Plots", ""] + [f"![{title}]({name})" for title, name in plots.items()]


def machine_facts() -> dict[str, Any]:
    def first(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "unknown"

    mem_kb = first("/proc/meminfo", "MemTotal").split()[0]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": first("/proc/cpuinfo", "model name"),
        "ram_gib": round(int(mem_kb) / 2**20, 1) if mem_kb.isdigit() else None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": platform.release(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def git_facts() -> dict[str, Any]:
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(dirty) if commit else None}


def utc_stamp() -> str:
    """Now, as the reports' `started_at`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_stem(report: dict[str, Any], prefix: str = "bench") -> str:
    """`bench-20260102T030405Z`: the name of a report's files, without the suffix."""
    return f"{prefix}-" + report["started_at"].replace("-", "").replace(":", "")


def write_reports(
    out: Path,
    report: dict[str, Any],
    *,
    prefix: str = "bench",
    latest: str = "latest",
    markdown: str | None = None,
) -> list[Path]:
    """`<prefix>-<UTC>.json` and `.md` under `out`, and `<latest>.json` / `.md` overwritten;
    the timestamped two."""
    out.mkdir(parents=True, exist_ok=True)
    stem = report_stem(report, prefix)
    text_json = json.dumps(report, indent=2) + "\n"
    text_md = render_markdown(report) if markdown is None else markdown
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths += [out / f"{latest}.json", out / f"{latest}.md"]
    for path, text in zip(paths, (text_json, text_md, text_json, text_md), strict=True):
        path.write_text(text)
    return paths[:2]


async def check_reachable(session: aiohttp.ClientSession, url: str) -> None:
    """Exit with a clear message unless `GET <url>/v3/` answers 200."""
    try:
        async with session.get(f"{url.rstrip('/')}/v3/") as resp:
            await resp.read()
            if resp.status != 200:
                raise SystemExit(f"cinderblock bench: GET {url}/v3/ answered {resp.status}")
    except aiohttp.ClientError as err:
        raise SystemExit(f"cinderblock bench: {url} is not reachable: {err}") from err


def _line(r: Result) -> str:
    return (
        f"{r.scenario:<13} c={r.concurrency:<3} {r.count:6d} ops {r.rate:8.1f}/s  "
        f"p50 {fmt(r.p50_ms)}  p90 {fmt(r.p90_ms)}  p99 {fmt(r.p99_ms)}  "
        f"max {fmt(r.max_ms)} ms  errors {r.errors}  CPU client {r.client_cpu_pct:g}% "
        f"machine {fmt(r.machine_cpu_pct)}%"
    )


def select(names: str | None) -> tuple[type[Scenario], ...]:
    """The scenarios named in a comma-separated list (all when None), in the usual order."""
    if not names:
        return SCENARIOS
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    unknown = wanted - {kind.name for kind in SCENARIOS}
    if unknown:
        known = ", ".join(kind.name for kind in SCENARIOS)
        raise SystemExit(f"cinderblock bench: unknown scenario {sorted(unknown)}; known: {known}")
    return tuple(kind for kind in SCENARIOS if kind.name in wanted)


async def run_bench(
    url: str,
    *,
    seconds: float,
    out: Path,
    scenarios: str | None = None,
    probe: LagProbe | None = None,
    plots: bool = False,
) -> None:
    kinds = select(scenarios)
    started = utc_stamp()
    machine, git = await asyncio.gather(
        asyncio.to_thread(machine_facts), asyncio.to_thread(git_facts)
    )
    connector = aiohttp.TCPConnector(limit=2 * max(CONCURRENCIES))
    timeout = aiohttp.ClientTimeout(total=60)
    results: list[Result] = []
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, timeout=timeout)
        )
        if probe is not None:
            await stack.enter_async_context(probe)
        await check_reachable(session, url)
        print(f"Benchmarking {url}: {seconds:g} s per run, concurrency {CONCURRENCIES}", flush=True)
        for kind in kinds:
            for concurrency in CONCURRENCIES:
                result = await run_one(session, url, kind, concurrency, seconds, probe)
                results.append(result)
                print(_line(result), flush=True)
    report: dict[str, Any] = {
        "started_at": started,
        "url": url,
        "seconds": seconds,
        "warmup": warmup_for(seconds),
        "machine": machine,
        "git": git,
        "results": [asdict(r) for r in results],
    }
    if plots:
        from cinderblock.cli.bench_plots import plot_closed_loop

        report["plots"] = await asyncio.to_thread(
            plot_closed_loop, out, report_stem(report), report
        )
    written = await asyncio.to_thread(write_reports, out, report)
    print(render_markdown(report), flush=True)
    print("Written: " + ", ".join(str(p) for p in written) + f" and {out}/latest.{{json,md}}")
