"""What the volume service reports: pools with capacity, and service heartbeats."""

from __future__ import annotations

import uuid

from tests.e2e.conftest import System


async def test_get_pools_and_services(system: System) -> None:
    async def reported() -> list | None:
        reply = await system.client.request("GET", "/scheduler-stats/get_pools?detail=true")
        pools: list = reply.json["pools"]
        return pools if len(pools) == len(system.settings.pools) else None

    pools = await system.projected.until(reported)
    names = sorted(p["name"] for p in pools)
    assert names == ["cinderblock@file-a#pool0", "cinderblock@file-b#pool0"]
    caps = {p["name"]: p["capabilities"] for p in pools}
    assert caps["cinderblock@file-b#pool0"]["multiattach"] is True
    assert caps["cinderblock@file-a#pool0"]["total_capacity_gb"] == 1000
    assert {c["shared_targets"] for c in caps.values()} == {False}
    plain = await system.client.request("GET", "/scheduler-stats/get_pools")
    assert all(set(p) == {"name"} for p in plain.json["pools"])
    services = await system.client.request("GET", "/os-services?binary=cinder-volume")
    hosts = sorted(s["host"] for s in services.json["services"])
    assert hosts == ["cinderblock@file-a", "cinderblock@file-b"]
    assert {s["state"] for s in services.json["services"]} == {"up"}
    member = system.client.as_(project_id=uuid.uuid4().hex, roles="member")
    assert (await member.request("GET", "/scheduler-stats/get_pools")).status == 403
    assert (await member.request("GET", "/os-services")).status == 403
