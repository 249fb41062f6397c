"""The chaos run: one rig (`cinderblock.chaos.rig`), then for each fault a fresh project
under the mixed load (`cinderblock.chaos.load`); once a third of the load's planned actions
were answered 2xx the fault's target is killed with SIGKILL, left down for ``outage``
seconds and started again (as systemd would); the load finishes, the system is left to go
quiet, and the invariants are checked (`cinderblock.chaos.checks`). A line per phase is
printed, and a Markdown table (one row per fault) is returned / written.

    python ops/chaos/run.py                       # every fault, writes ops/chaos/RESULTS.md
    python -m cinderblock.chaos.run --faults sagas,postgres --clients 4 --volumes 2
    python ops/chaos/run.py --shape scaled        # the scale-out shape's failovers

The scaled shape (`cinderblock.chaos.rig.SCALED`) has its own faults: "nats-node" kills the
NATS node leading the event stream, "relay-active" / "projector-active" the instance holding
the role's lock, "sagas-one" / "api-one" one of the two; each row also says who took over.
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
from cinderblock.chaos.rig import NODE, ROLES, SERVICES, SHAPES, Rig, until

# "none": the same load without a fault, the reference row.
FAULTS = ("none", *SERVICES, "postgres", "nats")
SCALED_FAULTS = ("none", "nats-node", "relay-active", "projector-active", "sagas-one", "api-one")
# Faults each shape takes (its default run: the first tuple).
SHAPE_FAULTS = {
    "single": (FAULTS, ()),
    "scaled": (SCALED_FAULTS, ("billing", "notifier", "postgres")),
}
FAILOVER_TIMEOUT = 30.0  # seconds from the kill for a standby (a stream leader) to take over
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
    target: str = "-"  # what was killed (an instance, "nats:n2", "postgres", …)
    ok_while_down: int = 0  # 2xx answers between the kill and the restart
    failover: str = "-"  # who took over, and when

    @property
    def passed(self) -> bool:
        failed = ("load hung", "no failover")
        return self.findings.ok and not any(n.startswith(failed) for n in self.notes)

    def row(self) -> str:
        f = self.findings
        killed = "-" if self.killed_at is None else f"{self.killed_at:.1f}"
        down = "-" if self.killed_at is None else str(self.ok_while_down)
        return (
            f"| {self.fault} | {self.target} | {self.requests} | {self.ok} | {down} "
            f"| {len(f.lost)} | {len(f.doubled)} | {len(f.stuck)} | {f.verify} "
            f"| {self.self_exits} | {self.failover} | {killed} | {self.seconds:.1f} "
            f"| {'pass' if self.passed else 'FAIL'} |"
        )


def render(results: Sequence[FaultResult], header: str) -> str:
    lines = [
        header,
        "",
        "| fault (kill -9) | target | requests | 2xx | 2xx while down | lost | doubled | stuck "
        "| verify | self-exits | failover | killed at s | phase s | result |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: "
        "| --- |",
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


async def watch_failover(rig: Rig, fault: str, target: str, killed: float) -> str | None:
    """Who took the killed target's part, and how long after the kill: the new leader of
    the event stream (a NATS node killed), the instance now holding the role's lock (the
    active relay or projector killed; the killed instance started again does not count);
    None if nobody within FAILOVER_TIMEOUT. Other faults have no one to watch: "-"."""
    stream = rig.stream
    service = fault.removesuffix("-active")
    if target.startswith(NODE):
        assert rig.cluster is not None
        cluster = rig.cluster

        async def now() -> str | None:
            leader = await cluster.stream_leader(stream)
            return leader if leader and leader != target.removeprefix(NODE) else None

        what = "leads the stream"
    elif fault.endswith("-active") and service in ROLES:

        async def now() -> str | None:
            holder = await rig.holder(rig.role(service))
            return holder if holder and holder != target else None

        what = "active"
    else:
        return "-"
    while time.monotonic() - killed < FAILOVER_TIMEOUT:
        if who := await now():
            return f"{who} {what} {time.monotonic() - killed:.1f} s after"
        await asyncio.sleep(0.1)
    return None


def _resumed(rig: Rig, service: str, besides: str) -> dict[str, int]:
    """Steps each other live instance of ``service`` logged resuming so far."""
    return {
        name: rig.logged(name, '"resuming ')
        for name, s in rig.instances.items()
        if s == service and name != besides and rig.procs[name].poll() is None
    }


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
    killed_at = pid = restarted_at = None
    target = failover = "-"
    resumed: dict[str, int] = {}
    watcher: asyncio.Task[str | None] | None = None
    took_over: str | None = "-"
    notes: list[str] = []
    if fault != "none":
        waiter = asyncio.create_task(reached.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        target = await rig.target(fault)
        service = rig.instances.get(target, "")
        resumed = _resumed(rig, service, target) if service == "sagas" else {}
        killed_at = time.monotonic() - load.t0
        pid = await rig.kill(target)
        watcher = asyncio.create_task(watch_failover(rig, fault, target, time.monotonic()))
        say(
            f"[{fault}] killed -9 {target} (pid {pid}) at {killed_at:.1f} s "
            f"({ok} answers 2xx so far)"
        )
        await asyncio.sleep(outage)
        # Down until someone took over too (bounded): the takeover is the survivors' own,
        # not a race with the killed one coming back.
        took_over = await watcher
        restarted_at = time.monotonic() - load.t0
        await rig.restart(target)
        say(f"[{fault}] {target} restarted after {restarted_at - killed_at:.1f} s down")
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
    if took_over is None:
        notes.append(f"no failover: nobody took {target}'s part within {FAILOVER_TIMEOUT:g} s")
        failover = "none"
    elif took_over != "-":
        failover = took_over
        say(f"[{fault}] failover: {took_over}")
    if resumed:
        now = _resumed(rig, "sagas", target)
        failover = ", ".join(f"{n} resumed {now.get(n, c) - c}" for n, c in resumed.items())
    ok_while_down = sum(
        1
        for a in result.answers
        if killed_at is not None
        and restarted_at is not None
        and killed_at <= a.at <= restarted_at
        and 200 <= a.status < 300
    )
    exits = rig.self_exits[exits_before:]
    if exits:
        notes.append(
            "exited by itself, started again by the rig's supervisor: "
            + ", ".join(
                f"{n} x {what}"
                for what, n in Counter(f"{name} (exit {code})" for name, code in exits).items()
            )
        )
        notes += [f"last line of {line}" for line in rig.exit_lines[exits_before:]]
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
        target,
        ok_while_down,
        failover,
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
    shape: str = "single",
    notifier: bool = True,
    keep: bool = False,
    say: Callable[[str], None] = print,
) -> list[FaultResult]:
    """Every fault of ``faults``, one after another on one rig; the rig's data dir (a fresh
    /tmp/chaos-* unless ``root``) is removed afterwards."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape}; choose from {', '.join(SHAPES)}")
    known = [f for group in SHAPE_FAULTS[shape] for f in group]
    unknown = [f for f in faults if f not in known]
    if unknown:
        raise ValueError(
            f"unknown fault(s) {unknown} for the {shape} shape; choose from {', '.join(known)}"
        )
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
        rig = Rig(root, services=services, shape=SHAPES[shape], nova_url=nova_url)
        progress(f"starting PostgreSQL, NATS and {', '.join(rig.instances)} under {root}")
        try:
            await rig.start()
            progress(f"running: api at {rig.api_url}, nats at {rig.nats_url}")
            if rig.self_exits:
                progress(
                    f"while starting, exited by themselves and started again: {rig.self_exits}; "
                    f"last lines: {rig.exit_lines}"
                )
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


def write_results(path: Path, text: str, section: str | None = None) -> None:
    """Put ``text`` into ``path``, keeping the file's other "## " sections (notes written by
    hand): ``section`` None replaces the part before the first "## " heading, a title the
    section "## <title>" (appended when missing)."""
    old = path.read_text() if path.exists() else ""
    parts: list[tuple[str | None, str]] = [(None, "")]
    for line in old.splitlines(keepends=True):
        if line.startswith("## "):
            parts.append((line[3:].strip(), ""))
        parts[-1] = (parts[-1][0], parts[-1][1] + line)
    new = text.rstrip("\n") + "\n\n"
    if section is not None:
        new = f"## {section}\n\n{new}"
    if any(title == section for title, _ in parts):
        parts = [(t, new if t == section else body) for t, body in parts]
    else:
        if parts[-1][1] and not parts[-1][1].endswith("\n\n"):
            parts[-1] = (parts[-1][0], parts[-1][1].rstrip("\n") + "\n\n")
        parts.append((section, new))
    path.write_text("".join(body for _, body in parts).rstrip("\n") + "\n")


def _shown(argv: list[str] | None) -> list[str]:
    """The command's options as typed, without where the table is written."""
    shown, skip = [], False
    for arg in sys.argv[1:] if argv is None else argv:
        if skip:
            skip = False
        elif arg in ("--results", "--section"):
            skip = True
        elif not arg.startswith(("--results=", "--section=")):
            shown.append(arg)
    return shown


SHAPE_WORDS = {
    "single": "",
    "scaled": (
        "Scale-out shape: one PostgreSQL, a three-node NATS cluster (stream replicas 3), two "
        "api processes sharing one port (SO_REUSEPORT), two sagas workers, relay and "
        "projector each with a hot standby (advisory lock), one billing, one notifier. "
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="single")
    parser.add_argument(
        "--faults",
        default=None,
        help=f"single shape: of {', '.join(FAULTS)} (default all); scaled shape: of "
        f"{', '.join(SCALED_FAULTS + SHAPE_FAULTS['scaled'][1])} "
        f"(default {', '.join(SCALED_FAULTS)})",
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--volumes", type=int, default=3, help="per client")
    parser.add_argument("--outage", type=float, default=2.0, help="seconds a killed one is down")
    parser.add_argument("--no-notifier", action="store_true", help="no notifier, no Nova")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs)")
    parser.add_argument("--results", type=Path, default=None, help="write the table here")
    parser.add_argument(
        "--section",
        default=None,
        help="with --results: write the table as this '## ' section of the file (replacing "
        "it), else as the part before the first '## ' heading; other sections are kept",
    )
    args = parser.parse_args(argv)
    given = args.faults if args.faults is not None else ",".join(SHAPE_FAULTS[args.shape][0])
    faults = [f.strip() for f in given.split(",") if f.strip()]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = asyncio.run(
        run_chaos(
            faults,
            clients=args.clients,
            volumes=args.volumes,
            outage=args.outage,
            shape=args.shape,
            notifier=not args.no_notifier,
            keep=args.keep,
            say=lambda line: print(line, flush=True),
        )
    )
    header = (
        f"Chaos run {when}, commit {_commit()}, {os.cpu_count()} CPUs, "
        f"`{' '.join(['python -m cinderblock.chaos.run', *_shown(argv)])}`. "
        f"{SHAPE_WORDS[args.shape]}{args.clients} clients x "
        f"{args.volumes} volumes in one project, {len(KINDS)} actions per volume; each target "
        f"killed -9 once a third of the actions were answered 2xx, down {args.outage:g} s "
        "(and, for a failover, until someone took over), then started again."
    )
    text = render(results, header)
    print(text, flush=True)
    if args.results is not None:
        write_results(args.results, text, args.section)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
