"""Every benchmark scenario really does what it claims against the whole system: one
setup, two operations (the second proves the loop can go on: a migration back, a retype
back, a second revert) and the teardown, without errors."""

from __future__ import annotations

import json

import aiohttp
import pytest

from cinderblock.cli.bench_scenarios import SCENARIOS, Api, Scenario
from tests.e2e.conftest import System


@pytest.mark.parametrize("kind", SCENARIOS, ids=lambda kind: kind.name)
async def test_scenario_runs_its_operation_twice(system: System, kind: type[Scenario]) -> None:
    async with aiohttp.ClientSession() as session:
        api = Api(session, system.url)
        scenario = kind(api)
        await scenario.setup()
        try:
            for _ in range(2):
                if scenario.needs_volume and scenario.volume is None:
                    await scenario.setup()  # as the worker loop does after a delete scenario
                latency = await scenario.op()
                assert 0 < latency < 30
        finally:
            await scenario.teardown()
        # Nothing of the worker's project is left behind but what the scenario means to leave.
        _, data = await api.call("GET", "/detail", (200,))
        assert json.loads(data)["volumes"] == []


async def test_migrate_scenario_moves_the_volume_between_pools(system: System) -> None:
    async with aiohttp.ClientSession() as session:
        api = Api(session, system.url)
        scenario = next(kind for kind in SCENARIOS if kind.name == "migrate_e2e")(api)
        await scenario.setup()
        try:
            hosts = []
            for _ in range(2):
                await scenario.op()
                hosts.append((await api.get(scenario.vid))["os-vol-host-attr:host"])
            assert hosts[0] != hosts[1]
            assert set(hosts) <= set(await api.hosts())
        finally:
            await scenario.teardown()
