"""`cinderblock bench --plots`: PNG plots beside the Markdown reports.

matplotlib is optional (the `bench` extra) and imported only here, only when plots are
asked for; it draws on the Agg canvas (no display, no pyplot state). Without it the plots
are skipped with a message saying how to install it, and the reports are written as ever.
Each function returns what it wrote, {title: file name}, for the report to link to.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_closed_loop", "plot_open_loop"]

MISSING = (
    "cinderblock bench: plots not written: matplotlib is not installed "
    "(pip install 'cinderblock[bench]'); the report is written without them"
)
DPI = 110


def _figure(width: float, height: float) -> Figure | None:
    """A figure on the Agg canvas, or None (and the message) without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print(MISSING, file=sys.stderr, flush=True)
        return None
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _caption(report: dict[str, Any]) -> str:
    commit = report.get("git", {}).get("commit") or "unknown"
    return f"{report['started_at']}, commit {commit}, {report['machine']['nproc']} CPUs"


def _save(figure: Figure, out: Path, name: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    figure.savefig(out / name, dpi=DPI)
    return name


def plot_open_loop(out: Path, stem: str, report: dict[str, Any]) -> dict[str, str]:
    """`<stem>-latency.png`: p50 and p99 against the offered rate (with the target), and
    the achieved rate against the offered one."""
    figure = _figure(11, 4.5)
    if figure is None:
        return {}
    latency, rates = figure.subplots(1, 2, width_ratios=(3, 2))
    results = sorted(report["results"], key=lambda r: r["offered"])
    for key, label, marker in (("p50_ms", "p50", "o"), ("p99_ms", "p99", "s")):
        points = [(r["offered"], r[key]) for r in results if r[key] is not None]
        if points:
            latency.plot(*zip(*points, strict=True), marker=marker, label=label)
    if any(r["p99_ms"] for r in results):
        latency.set_yscale("log")
    target = "target: p99 \u2264 50 ms at 1,000/s"
    latency.axhline(50, linestyle="--", color="grey", linewidth=1, label=target)
    offered = [r["offered"] for r in results]
    if offered and min(offered) <= 1000 <= max(offered):
        latency.plot([1000], [50], marker="*", markersize=12, color="grey", linestyle="none")
    latency.set(xlabel="offered load, actions/s (os-set_bootable, open loop)", ylabel="ms")
    latency.set_title("Latency from the scheduled send time", fontsize=10)
    latency.grid(True, which="both", alpha=0.3)
    if offered:
        rates.plot(offered, offered, linestyle="--", color="grey", linewidth=1, label="offered")
        rates.plot(offered, [r["achieved"] for r in results], marker="o", label="achieved (200)")
    rates.set(xlabel="offered, actions/s", ylabel="actions/s")
    rates.set_title("Throughput", fontsize=10)
    rates.grid(True, alpha=0.3)
    for axes in (latency, rates):
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    figure.suptitle(f"Cinderblock open loop: {_caption(report)}", fontsize=10)
    return {"latency against offered load": _save(figure, out, f"{stem}-latency.png")}


def plot_closed_loop(out: Path, stem: str, report: dict[str, Any]) -> dict[str, str]:
    """`<stem>-throughput.png`: each scenario's ops/s against its concurrency."""
    figure = _figure(9, 5.5)
    if figure is None:
        return {}
    from matplotlib import colormaps

    axes = figure.subplots()
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in report["results"]:
        if r["count"]:
            series[r["scenario"]].append((r["concurrency"], r["rate"]))
    tab20 = colormaps["tab20"].colors
    colors = tab20[0::2] + tab20[1::2]  # the strong ten first
    markers = "osD^v<>pPX*h"
    for i, (scenario, points) in enumerate(series.items()):
        xs, ys = zip(*sorted(points), strict=True)
        axes.plot(xs, ys, marker=markers[i % len(markers)], color=colors[i % 20], label=scenario)
    concurrencies = sorted({r["concurrency"] for r in report["results"]})
    if concurrencies:
        axes.set_xticks(concurrencies)
    if series:
        axes.set_yscale("log")
        axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes.set(xlabel="concurrency (closed loop: workers)", ylabel="operations/s")
    axes.grid(True, which="both", alpha=0.3)
    figure.suptitle(f"Cinderblock throughput: {_caption(report)}", fontsize=10)
    return {"throughput against concurrency": _save(figure, out, f"{stem}-throughput.png")}
