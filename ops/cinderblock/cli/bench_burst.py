"""A burst in ONE project, as Terraform, Heat and Nova make them: N workers create V volumes,
then extend, snapshot and retype (in place) each, all in the same project. Every answer's
status is counted per phase (anything but the expected 2xx is a failure), every volume must
reach its end state, and the project's quota set must add up afterwards.

Used by `cinderblock bench --burst` and, smaller, by the test suite.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

TYPES = ("burst-a", "burst-b")
FAILED = object()  # the answer of a request that was not 2xx
SETTLE_TIMEOUT = 120.0
POLL = 0.02


@dataclass
class Phase:
    """One phase: the answers to its requests, and how long until every volume settled."""

    name: str
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    request_s: float = 0.0  # first request sent .. last answer received
    settle_s: float = 0.0  # first request sent .. every volume in its end state

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def rate(self) -> float:
        return self.ok / self.request_s if self.request_s else 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def ms(q: float) -> float | None:
            if not ordered:
                return None
            return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

        return {
            "phase": self.name,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "ok": self.ok,
            "requests_per_s": round(self.rate, 1),
            "p50_ms": ms(0.5),
            "p99_ms": ms(0.99),
            "request_s": round(self.request_s, 3),
            "settle_s": round(self.settle_s, 3),
            "failures": self.failures[:5],
        }


@dataclass
class BurstReport:
    project: str
    workers: int
    volumes: int
    phases: list[Phase]
    quota: dict[str, Any]
    quota_expected: dict[str, int]
    end_state_problems: list[str]

    @property
    def all_ok(self) -> bool:
        return (
            all(p.ok == self.volumes and not p.failures for p in self.phases)
            and not self.end_state_problems
            and self.quota_problems() == []
        )

    def quota_problems(self) -> list[str]:
        problems = []
        for key, want in self.quota_expected.items():
            got = self.quota.get(key, {})
            if got.get("in_use") != want or got.get("reserved") != 0:
                problems.append(f"{key}: {got} (want in_use {want}, reserved 0)")
        return problems

    def summary(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "workers": self.workers,
            "volumes": self.volumes,
            "phases": [p.summary() for p in self.phases],
            "quota_problems": self.quota_problems(),
            "end_state_problems": self.end_state_problems[:10],
            "all_ok": self.all_ok,
        }


class _Client:
    def __init__(self, session: aiohttp.ClientSession, urls: list[str], project: str) -> None:
        self.session = session
        self.urls = [u.rstrip("/") for u in urls]
        self.project = project
        self.headers = {"X-Auth-Token": f"burst:{project}"}
        self._turn = 0

    async def call(
        self, method: str, path: str, body: Any = None, version: str | None = None
    ) -> tuple[int, Any]:
        """Requests alternate between the API processes given, as a load balancer sends
        them; one that refuses connections (killed) is skipped, as a load balancer's health
        check would. A request lost in flight is the caller's failure."""
        headers = self.headers
        if version:
            headers = {**headers, "OpenStack-API-Version": version}
        self._turn += 1
        turn = self._turn  # others move it on while this request waits
        for i in range(len(self.urls)):
            base = self.urls[(turn + i) % len(self.urls)]
            url = f"{base}/v3/{self.project}{path}"
            try:
                async with self.session.request(method, url, json=body, headers=headers) as resp:
                    data = await resp.read()
                break
            except aiohttp.ClientConnectorError:
                if i == len(self.urls) - 1:
                    raise
        try:
            return resp.status, json.loads(data) if data else None
        except ValueError:
            return resp.status, data.decode(errors="replace")


async def _run_phase(
    phase: Phase,
    items: list[Any],
    workers: int,
    request: Callable[[Any], Awaitable[tuple[int, Any]]],
) -> list[Any]:
    """Send one request per item from ``workers`` concurrent workers; the answers' bodies in
    the items' order (FAILED where the request failed; a 2xx without a body is None)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(items)):
        queue.put_nowait(i)
    answers: list[Any] = [FAILED] * len(items)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t0 = time.perf_counter()
            try:
                status, body = await request(items[i])
            except (aiohttp.ClientError, TimeoutError) as err:
                phase.statuses[0] += 1
                phase.failures.append(f"{type(err).__name__}: {err}")
                continue
            phase.latencies.append(time.perf_counter() - t0)
            phase.statuses[status] += 1
            if 200 <= status < 300:
                answers[i] = body
            else:
                phase.failures.append(f"{status}: {str(body)[:200]}")

    await asyncio.gather(*(worker() for _ in range(workers)))
    return answers


async def _settle(
    client: _Client, volume_ids: list[str], done: Callable[[dict[str, Any]], bool]
) -> list[str]:
    """Wait until every volume satisfies ``done`` (listing the project's volumes); the ids
    that never did, with their last state."""
    deadline = time.perf_counter() + SETTLE_TIMEOUT
    want = set(volume_ids)
    while True:
        status, body = await client.call("GET", "/volumes/detail?limit=1000")
        seen = {v["id"]: v for v in body["volumes"]} if status == 200 else {}
        pending = [vid for vid in want if vid not in seen or not done(seen[vid])]
        if not pending:
            return []
        if any(str(seen.get(v, {}).get("status", "")).startswith("error") for v in pending):
            break
        if time.perf_counter() > deadline:
            break
        await asyncio.sleep(POLL)
    return [
        f"{vid}: {seen.get(vid, {}).get('status', 'missing')} "
        f"size {seen.get(vid, {}).get('size')} type {seen.get(vid, {}).get('volume_type')}"
        for vid in pending
    ]


async def _settle_snapshots(client: _Client, snapshot_ids: list[str]) -> list[str]:
    deadline = time.perf_counter() + SETTLE_TIMEOUT
    want = set(snapshot_ids)
    while True:
        status, body = await client.call("GET", "/snapshots/detail?limit=1000")
        seen = {s["id"]: s for s in body["snapshots"]} if status == 200 else {}
        pending = [s for s in want if seen.get(s, {}).get("status") != "available"]
        if not pending or time.perf_counter() > deadline:
            return [f"snapshot {s}: {seen.get(s, {}).get('status', 'missing')}" for s in pending]
        await asyncio.sleep(POLL)


async def run_burst(
    session: aiohttp.ClientSession,
    urls: list[str],
    *,
    workers: int = 16,
    volumes: int = 48,
    project: str | None = None,
    cleanup: bool = True,
) -> BurstReport:
    """The burst against the API(s) at ``urls`` (noauth: the caller is admin of its
    project); the project's quotas are made unlimited first."""
    project = project or uuid.uuid4().hex
    client = _Client(session, urls, project)
    unlimited = {"volumes": -1, "gigabytes": -1, "snapshots": -1}
    await client.call("PUT", f"/os-quota-sets/{project}", {"quota_set": unlimited})
    for name in TYPES:
        await client.call("POST", "/types", {"volume_type": {"name": name}})
    phases: list[Phase] = []
    problems: list[str] = []

    async def timed(
        name: str,
        items: list[Any],
        request: Callable[[Any], Awaitable[tuple[int, Any]]],
        settle: Callable[[list[Any]], Awaitable[list[str]]],
    ) -> list[Any]:
        phase = Phase(name)
        phases.append(phase)
        t0 = time.perf_counter()
        answers = await _run_phase(phase, items, workers, request)
        phase.request_s = time.perf_counter() - t0
        problems.extend(await settle(answers))
        phase.settle_s = time.perf_counter() - t0
        s = phase.summary()
        print(
            f"  {name}: {s['statuses']} in {s['request_s']} s, settled after {s['settle_s']} s",
            file=sys.stderr,
            flush=True,
        )
        return answers

    def create(_: int) -> Awaitable[tuple[int, Any]]:
        return client.call("POST", "/volumes", {"volume": {"size": 1, "volume_type": TYPES[0]}})

    created = await timed(
        "create",
        list(range(volumes)),
        create,
        lambda answers: _settle(
            client,
            [a["volume"]["id"] for a in answers if a is not FAILED],
            lambda v: v["status"] == "available",
        ),
    )
    ids = [a["volume"]["id"] for a in created if a is not FAILED]

    def action(body: dict[str, Any]) -> Callable[[str], Awaitable[tuple[int, Any]]]:
        return lambda vid: client.call("POST", f"/volumes/{vid}/action", body)

    def accepted(answers: list[Any]) -> list[str]:
        return [vid for vid, a in zip(ids, answers, strict=True) if a is not FAILED]

    extended: list[str] = []

    async def grown(answers: list[Any]) -> list[str]:
        extended.extend(accepted(answers))
        return await _settle(
            client, extended, lambda v: v["status"] == "available" and v["size"] == 2
        )

    await timed("extend", ids, action({"os-extend": {"new_size": 2}}), grown)

    def snapshot(vid: str) -> Awaitable[tuple[int, Any]]:
        return client.call("POST", "/snapshots", {"snapshot": {"volume_id": vid}})

    snaps = await timed(
        "snapshot",
        ids,
        snapshot,
        lambda answers: _settle_snapshots(
            client, [a["snapshot"]["id"] for a in answers if a is not FAILED]
        ),
    )
    snapshot_ids = [a["snapshot"]["id"] for a in snaps if a is not FAILED]
    snapshotted = accepted(snaps)
    retyped: list[str] = []

    async def moved(answers: list[Any]) -> list[str]:
        retyped.extend(accepted(answers))
        return await _settle(
            client, retyped, lambda v: v["status"] == "available" and v["volume_type"] == TYPES[1]
        )

    await timed(
        "retype",
        ids,
        action({"os-retype": {"new_type": TYPES[1], "migration_policy": "never"}}),
        moved,
    )
    status, body = await client.call("GET", f"/os-quota-sets/{project}?usage=True")
    quota = body.get("quota_set", {}) if status == 200 and isinstance(body, dict) else {}

    def size(vid: str) -> int:
        return 2 if vid in extended else 1

    # What the accepted requests add up to (all of them, when every answer was 2xx).
    expected = {
        "volumes": len(ids),
        "snapshots": len(snapshot_ids),
        "gigabytes": sum(size(v) for v in ids) + sum(size(v) for v in snapshotted),
        f"volumes_{TYPES[1]}": len(retyped),
        f"volumes_{TYPES[0]}": len(ids) - len(retyped),
    }
    report = BurstReport(project, workers, volumes, phases, quota, expected, problems)
    if cleanup:
        await _cleanup(client, ids, snapshot_ids, workers)
    return report


async def _cleanup(client: _Client, ids: list[str], snapshot_ids: list[str], workers: int) -> None:
    """Delete what the burst made (snapshots first); waits until the volumes are gone."""
    await _run_phase(
        Phase("cleanup"), snapshot_ids, workers, lambda s: client.call("DELETE", f"/snapshots/{s}")
    )
    deadline = time.perf_counter() + SETTLE_TIMEOUT
    while time.perf_counter() < deadline:
        status, body = await client.call("GET", "/snapshots?limit=1000")
        if status == 200 and not body["snapshots"]:
            break
        await asyncio.sleep(POLL)
    await _run_phase(
        Phase("cleanup"), ids, workers, lambda v: client.call("DELETE", f"/volumes/{v}")
    )


def render_burst(report: BurstReport) -> str:
    lines = [
        f"One-project burst: {report.workers} workers, {report.volumes} volumes, "
        f"project {report.project}",
        "",
        "| phase | answers | ok/s (requests) | p50 ms | p99 ms | all settled after s |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for p in report.phases:
        s = p.summary()
        answers = ", ".join(f"{n} x {code}" for code, n in s["statuses"].items())
        lines.append(
            f"| {p.name} | {answers} | {s['requests_per_s']} | {s['p50_ms']} | {s['p99_ms']} "
            f"| {s['settle_s']} |"
        )
    lines.append("")
    quota = report.quota_problems()
    lines.append("Quota set adds up." if not quota else "Quota set wrong: " + "; ".join(quota))
    if report.end_state_problems:
        lines.append(f"Volumes not in their end state: {len(report.end_state_problems)}")
    return "\n".join(lines)


async def run_burst_bench(urls: list[str], workers: int, volumes: int, out: Path) -> None:
    """`cinderblock bench --burst`: run it, print and write the report (exit 1 unless every
    request was answered 2xx, every volume settled and the quota set adds up)."""
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    print(
        f"One-project burst against {', '.join(urls)}: {workers} workers, {volumes} volumes",
        file=sys.stderr,
        flush=True,
    )
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=4 * workers)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        report = await run_burst(session, urls, workers=workers, volumes=volumes)
    text = render_burst(report)
    summary = {"started_at": started, "urls": urls, **report.summary()}
    await asyncio.to_thread(_write, out, f"burst-{started}", summary, text)
    print(text, flush=True)
    if not report.all_ok:
        raise SystemExit(1)


def _write(out: Path, stem: str, summary: dict[str, Any], text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / f"{stem}.md").write_text(text + "\n")
