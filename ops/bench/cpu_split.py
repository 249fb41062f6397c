"""Where the machine's CPU goes while a load runs: CPU seconds per process group (each
Cinderblock service, PostgreSQL, NATS, the bench client, the rest), from /proc.

    python ops/bench/cpu_split.py --seconds 8 [--json] &
    cinderblock bench --url http://127.0.0.1:8776 --scenarios set_bootable --seconds 8

Divide a group's CPU seconds by the operations the bench counted in the same window to get
CPU per operation (the figure a lean request path shrinks). Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def group_of(cmdline: list[str], comm: str) -> str:
    """The group a process belongs to, from its command line."""
    if comm.startswith("postgres") or (cmdline and cmdline[0].endswith("postgres")):
        return "postgresql"
    if "nats-server" in comm or (cmdline and cmdline[0].endswith("nats-server")):
        return "nats"
    words = [w for w in cmdline if w]
    if "serve" in words:
        after = words[words.index("serve") + 1 : words.index("serve") + 2]
        return f"cinderblock {after[0]}" if after else "cinderblock"
    if "bench" in words:
        return "bench client"
    if "dev" in words and any(w.endswith("cinderblock") or "cinderblock" in w for w in words):
        return "cinderblock dev (parent / all-in-one)"
    return "other"


def _processes() -> dict[int, tuple[str, float]]:
    """pid -> (group, CPU seconds so far)."""
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
        found[int(entry.name)] = (group_of(cmdline, comm), cpu)
    return found


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def split(seconds: float) -> dict[str, object]:
    before, (busy0, total0), began = _processes(), _machine_busy(), time.monotonic()
    time.sleep(seconds)
    after, (busy1, total1), took = _processes(), _machine_busy(), time.monotonic() - began
    groups: dict[str, float] = {}
    for pid, (group, cpu) in after.items():
        start = before.get(pid, (group, 0.0))[1]  # a process born in the window counts whole
        groups[group] = groups.get(group, 0.0) + max(cpu - start, 0.0)
    machine = (busy1 - busy0) / TICKS
    return {
        "seconds": round(took, 2),
        "machine_busy_percent": round(100 * (busy1 - busy0) / max(total1 - total0, 1), 1),
        "machine_cpu_s": round(machine, 2),
        "groups_cpu_s": {g: round(s, 2) for g, s in sorted(groups.items(), key=lambda x: -x[1])},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--delay", type=float, default=0.0, help="wait this long first")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    time.sleep(args.delay)
    figures = split(args.seconds)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"{figures['seconds']} s, machine {figures['machine_busy_percent']} % busy")
    groups = figures["groups_cpu_s"]
    assert isinstance(groups, dict)
    for group, cpu in groups.items():
        print(f"  {group:40} {cpu:7.2f} CPU s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
