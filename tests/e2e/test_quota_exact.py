"""Quota stays exact under real concurrency: many coroutines, two API processes on one
database, one project with tight limits, a random mix of creates, extends, snapshots and
deletes (seeded: the seed is in the test id). Checked against the event log afterwards:

- replaying the project's quota events one by one, usage plus reservations never exceed a
  limit after any event;
- every reservation is committed or released exactly once, never both;
- the quota set the API shows (in_use, reserved) is what the log implies, and it matches
  the volumes and snapshots that exist;
- no answer was a 409 or a 5xx (a concurrency symptom), only Cinder's own refusals.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from eventsourcing.persistence import StoredEvent

from cinderblock.domain.quota import ProjectQuota, quota_id
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.mapping import event_name
from tests.helpers.processes import Deployment, serving
from tests.helpers.servers import Servers

LIMITS = {"volumes": 8, "gigabytes": 24, "snapshots": 5}
MIX = ["create", "create", "extend", "extend", "snapshot", "delete"]
WORKERS = 12
STEPS = 10
TRANSIENT = {"creating", "extending", "deleting", "retyping", "downloading"}
# What Cinder itself answers to these requests; anything else is a failure.
ALLOWED = {
    "create": {202, 413},
    "extend": {202, 400, 404, 413},
    "snapshot": {202, 400, 404, 413},
    "delete": {202, 400, 404},
}


@pytest_asyncio.fixture(scope="module")
async def two_apis(
    servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployment]:
    services = ("api", "api", "relay", "projector", "sagas")
    async with serving(servers, tmp_path_factory.mktemp("quota"), services) as deployed:
        yield deployed


class Project:
    def __init__(self, session: aiohttp.ClientSession, urls: list[str]) -> None:
        self.id = uuid.uuid4().hex
        self.session = session
        self.urls = urls
        self.turn = 0
        self.answers: Counter[tuple[str, int]] = Counter()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.turn += 1
        url = f"{self.urls[self.turn % len(self.urls)]}/v3/{self.id}{path}"
        headers = {"X-Auth-Token": f"u:{self.id}"}
        async with self.session.request(method, url, json=body, headers=headers) as resp:
            data = await resp.read()
        return resp.status, (json.loads(data) if data else None)

    async def volumes(self) -> list[dict[str, Any]]:
        status, body = await self.call("GET", "/volumes/detail?limit=1000")
        assert status == 200, body
        return list(body["volumes"])

    async def snapshots(self) -> list[dict[str, Any]]:
        status, body = await self.call("GET", "/snapshots/detail?limit=1000")
        assert status == 200, body
        return list(body["snapshots"])


async def worker(project: Project, rng: random.Random) -> None:
    mine: list[str] = []
    for _ in range(STEPS):
        op = rng.choice(
            ["create", "create", "extend", "snapshot", "delete"] if mine else ["create"]
        )
        if op == "create":
            size = rng.randint(1, 4)
            status, body = await project.call("POST", "/volumes", {"volume": {"size": size}})
            if status == 202:
                mine.append(body["volume"]["id"])
        else:
            vid = rng.choice(mine)
            if op == "extend":
                new_size = rng.randint(2, 6)
                body = {"os-extend": {"new_size": new_size}}
                status, _ = await project.call("POST", f"/volumes/{vid}/action", body)
            elif op == "snapshot":
                body = {"snapshot": {"volume_id": vid, "force": True}}
                status, _ = await project.call("POST", "/snapshots", body)
            else:
                status, _ = await project.call("DELETE", f"/volumes/{vid}?cascade=true")
                if status == 202:
                    mine.remove(vid)
        project.answers[(op, status)] += 1
        await asyncio.sleep(rng.random() * 0.02)


async def settled(project: Project) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The project's volumes and snapshots once nothing is in a transient status."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        volumes, snapshots = await project.volumes(), await project.snapshots()
        busy = [v for v in volumes if v["status"] in TRANSIENT] + [
            s for s in snapshots if s["status"] in {"creating", "deleting"}
        ]
        if not busy:
            return volumes, snapshots
        assert loop.time() < deadline, busy
        await asyncio.sleep(0.05)


async def quota_log(pool: asyncpg.Pool, project: str) -> list[tuple[str, Any]]:
    store = AsyncEventStore(pool)
    rows = await pool.fetch(
        "SELECT originator_version, topic, state FROM events WHERE originator_id = $1 "
        "ORDER BY originator_version",
        quota_id(project),
    )
    return [
        (
            event_name(r["topic"]),
            store.mapper.to_domain_event(
                StoredEvent(quota_id(project), r["originator_version"], r["topic"], r["state"])
            ),
        )
        for r in rows
    ]


@pytest.mark.parametrize("seed", [11, 23, 42])
async def test_quota_is_exact_under_a_concurrent_random_mix(
    two_apis: Deployment, seed: int
) -> None:
    async with aiohttp.ClientSession() as session:
        project = Project(session, two_apis.api_urls)
        status, _ = await project.call("PUT", f"/os-quota-sets/{project.id}", {"quota_set": LIMITS})
        assert status == 200
        rng = random.Random(seed)
        await asyncio.gather(
            *(worker(project, random.Random(rng.random())) for _ in range(WORKERS))
        )
        volumes, snapshots = await settled(project)
        status, body = await project.call("GET", f"/os-quota-sets/{project.id}?usage=True")
        assert status == 200
        shown = body["quota_set"]

    unexpected = {k: n for k, n in project.answers.items() if k[1] not in ALLOWED[k[0]]}
    assert not unexpected, project.answers
    assert project.answers[("create", 202)] > 0
    assert project.answers[("create", 413)] > 0  # the limits were really reached

    async with asyncpg.create_pool(two_apis.database_url, min_size=1, max_size=2) as pool:
        log = await quota_log(pool, project.id)
    quota: ProjectQuota | None = None
    reserved: Counter[str] = Counter()
    settled_ids: Counter[str] = Counter()
    for name, event in log:
        quota = event.mutate(quota)
        assert quota is not None
        for resource, limit in LIMITS.items():
            assert quota.usage(resource) <= limit, (name, resource, quota.in_use)
        rid = getattr(event, "reservation_id", None)
        if name.endswith("Reserved"):
            reserved[rid] += 1
        elif name.endswith(("ReservationCommitted", "ReservationReleased")):
            settled_ids[rid] += 1
    assert quota is not None
    assert set(reserved.values()) <= {1}
    assert settled_ids == reserved  # each committed or released exactly once
    assert quota.reservations == {}
    for resource in LIMITS:
        assert shown[resource]["in_use"] == quota.in_use.get(resource, 0), resource
        assert shown[resource]["reserved"] == 0, resource
    assert quota.in_use.get("volumes", 0) == len(volumes)
    assert quota.in_use.get("snapshots", 0) == len(snapshots)
    assert quota.in_use.get("gigabytes", 0) == sum(v["size"] for v in volumes) + sum(
        s["size"] for s in snapshots
    )
