"""The chaos run: one rig (`cinderblock.chaos.rig`), then for each fault a fresh project
under the mixed load (`cinderblock.chaos.load`); once a third of the load's planned actions
were answered 2xx the fault's target is killed with SIGKILL, left down for ``outage``
seconds and started again (as systemd would); the load finishes, the system is left to go
quiet, and the invariants are checked (`cinderblock.chaos.checks`). A line per phase is
printed, and a Markdown table (one row per fault) is returned / written.

    python ops/chaos/run.py                       # every fault, writes ops/chaos/RESULTS.md
    python -m cinderblock.chaos.run --faults sagas,postgres --clients 4 --volumes 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from cinderblock.chaos.checks import Findings, check, last_dead_letter, quiesce, run_verify
from cinderblock.chaos.load import KINDS, Answer, Load
from cinderblock.chaos.nova import CountingNova
from cinderblock.chaos.rig import SERVICES, Rig, until

# "none": the same load without a fault, the reference row.
FAULTS = ("none", *SERVICES, "postgres", "nats")
KILL_AT = 1 / 3  # of the planned actions answered 2xx
LOAD_TIMEOUT = 240.0
NOVA_WAIT = 20.0  # the notifier's ack wait (13 s by default) and some


@dataclass
class FaultResult:
    fault: str
    requests: int
    ok: int
    findings: Findings
    seconds: float
    killed_at: float | None = None  # seconds into the load
    pid: int | None = None
    notes: list[str] = field(default_factory=list)
    self_exits: int = 0

    @property
    def passed(self) -> bool:
        failed = ("load hung",)
        return self.findings.ok and not any(n.startswith(failed) for n in self.notes)

    def row(self) -> str:
        f = self.findings
        killed = "-" if self.killed_at is None else f"{self.killed_at:.1f}"
        return (
            f"| {self.fault} | {self.requests} | {self.ok} | {len(f.lost)} | {len(f.doubled)} "
            f"| {len(f.stuck)} | {f.verify} | {self.self_exits} | {killed} | {self.seconds:.1f} "
            f"| {'pass' if self.passed else 'FAIL'} |"
        )


def render(results: Sequence[FaultResult], header: str) -> str:
    lines = [
        header,
        "",
        "| fault (kill -9) | requests | 2xx | lost | doubled | stuck | verify | self-exits "
        "| killed at s | phase s | result |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
        *(r.row() for r in results),
        "",
    ]
    details = [
        f"- {r.fault}: {line}"
        for r in results
        for line in (
            *r.findings.lost,
            *r.findings.doubled,
            *r.findings.stuck,
            *r.findings.other,
            *r.notes,
        )[:20]
    ]
    if details:
        lines += ["Details:", "", *details, ""]
    return "\n".join(lines)


async def run_fault(
    rig: Rig,
    session: aiohttp.ClientSession,
    nova: CountingNova | None,
    fault: str,
    *,
    clients: int,
    volumes: int,
    outage: float,
    say: Callable[[str], None],
) -> FaultResult:
    started = time.monotonic()
    threshold = max(1, int(clients * volumes * len(KINDS) * KILL_AT))
    reached = asyncio.Event()
    ok = 0

    def on_answer(answer: Answer) -> None:
        nonlocal ok
        if 200 <= answer.status < 300:
            ok += 1
            if ok >= threshold:
                reached.set()

    load = Load(
        session,
        rig.api_url,
        project=uuid.uuid4().hex,
        clients=clients,
        volumes=volumes,
        on_answer=on_answer,
    )
    await load.prepare()
    exits_before = len(rig.self_exits)
    dead_letters = await last_dead_letter(rig.dsn)
    load.t0 = time.monotonic()
    say(f"[{fault}] load: {clients} clients x {volumes} volumes, {len(KINDS)} actions each")
    task = asyncio.create_task(load.run())
    killed_at = pid = None
    notes: list[str] = []
    if fault != "none":
        waiter = asyncio.create_task(reached.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        killed_at = time.monotonic() - load.t0
        pid = await rig.kill(fault)
        say(f"[{fault}] killed -9 pid {pid} at {killed_at:.1f} s ({ok} answers 2xx so far)")
        await asyncio.sleep(outage)
        await rig.restart(fault)
        say(f"[{fault}] restarted after {outage:g} s down")
    finished, _ = await asyncio.wait({task}, timeout=LOAD_TIMEOUT)
    if not finished:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        notes.append(f"load hung: not finished after {LOAD_TIMEOUT:g} s, cancelled")
    result = load.result
    say(
        f"[{fault}] load done at {time.monotonic() - load.t0:.1f} s: "
        f"{len(result.answers)} requests, {result.ok} 2xx"
    )
    refused = Counter(
        f"{a.kind} {a.status or 'no answer'}" for a in result.answers if not 200 <= a.status < 300
    )
    if refused:
        notes.append("not 2xx: " + ", ".join(f"{n} x {k}" for k, n in sorted(refused.items())))
    ids = result.volumes
    settle = await quiesce(rig.dsn, ids)
    notes += settle
    exits = rig.self_exits[exits_before:]
    if exits:
        notes.append(
            "exited by itself, started again by the rig's supervisor: "
            + ", ".join(
                f"{n} x {what}"
                for what, n in Counter(f"{name} (exit {code})" for name, code in exits).items()
            )
        )
    nova_counts = None
    if nova is not None:
        expected = result.in_use_extended
        await until(lambda: all(nova.extended.get(v) for v in expected), NOVA_WAIT, 0.1)
        nova_counts = type(nova.extended)({v: nova.extended[v] for v in ids if v in nova.extended})
    say(f"[{fault}] quiet after {time.monotonic() - load.t0:.1f} s; checking")
    findings = await check(
        rig.dsn,
        rig.root,
        result.answers,
        ids,
        nova_counts=nova_counts,
        nova_expected=result.in_use_extended if nova is not None else None,
        dead_letters_after=dead_letters,
    )
    findings.other += result.problems
    findings.verify_ok, findings.verify = await asyncio.to_thread(run_verify, rig.dsn)
    outcome = FaultResult(
        fault,
        len(result.answers),
        result.ok,
        findings,
        time.monotonic() - started,
        killed_at,
        pid,
        notes,
        len(exits),
    )
    say(
        f"[{fault}] {'pass' if outcome.passed else 'FAIL'}: lost {len(findings.lost)}, "
        f"doubled {len(findings.doubled)}, stuck {len(findings.stuck)}, verify {findings.verify}"
    )
    return outcome


async def run_chaos(
    faults: Sequence[str],
    *,
    clients: int = 8,
    volumes: int = 3,
    outage: float = 2.0,
    root: Path | None = None,
    notifier: bool = True,
    keep: bool = False,
    say: Callable[[str], None] = print,
) -> list[FaultResult]:
    """Every fault of ``faults``, one after another on one rig; the rig's data dir (a fresh
    /tmp/chaos-* unless ``root``) is removed afterwards."""
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; choose from {', '.join(FAULTS)}")
    if not notifier and "notifier" in faults:
        raise ValueError("the notifier fault needs the notifier")
    t0 = time.monotonic()

    def progress(line: str) -> None:
        say(f"{time.monotonic() - t0:7.1f}s {line}")

    made = root is None
    root = Path(tempfile.mkdtemp(prefix="chaos-", dir="/tmp")) if root is None else root
    nova = CountingNova() if notifier else None
    services = SERVICES if notifier else tuple(s for s in SERVICES if s != "notifier")
    results: list[FaultResult] = []
    try:
        nova_url = await nova.start() if nova is not None else ""
        rig = Rig(root, services=services, nova_url=nova_url)
        progress(f"starting PostgreSQL, NATS and {', '.join(services)} under {root}")
        try:
            await rig.start()
            progress(f"running: api at {rig.api_url}, nats at {rig.nats_url}")
            timeout = aiohttp.ClientTimeout(total=60)
            connector = aiohttp.TCPConnector(limit=4 * clients)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                for fault in faults:
                    results.append(
                        await run_fault(
                            rig,
                            session,
                            nova,
                            fault,
                            clients=clients,
                            volumes=volumes,
                            outage=outage,
                            say=progress,
                        )
                    )
        finally:
            codes = await rig.stop()
            progress(f"stopped: exit codes {codes}")
    finally:
        if nova is not None:
            await nova.stop()
        if made and not keep:
            shutil.rmtree(root, ignore_errors=True)
        elif made:
            progress(f"kept {root} (logs in {root / 'logs'}; remove it when done)")
    return results


def _commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"of {', '.join(FAULTS)}")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--volumes", type=int, default=3, help="per client")
    parser.add_argument("--outage", type=float, default=2.0, help="seconds a killed one is down")
    parser.add_argument("--no-notifier", action="store_true", help="no notifier, no Nova")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs)")
    parser.add_argument("--results", type=Path, default=None, help="write the table here")
    args = parser.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = asyncio.run(
        run_chaos(
            faults,
            clients=args.clients,
            volumes=args.volumes,
            outage=args.outage,
            notifier=not args.no_notifier,
            keep=args.keep,
            say=lambda line: print(line, flush=True),
        )
    )
    header = (
        f"Chaos run {when}, commit {_commit()}, {os.cpu_count()} CPUs: {args.clients} clients x "
        f"{args.volumes} volumes in one project, {len(KINDS)} actions per volume; each target "
        f"killed -9 once a third of the actions were answered 2xx, down {args.outage:g} s, "
        "then started again."
    )
    text = render(results, header)
    print(text, flush=True)
    if args.results is not None:
        args.results.write_text(text)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
