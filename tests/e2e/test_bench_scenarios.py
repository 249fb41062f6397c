"""Every benchmark scenario really does what it claims against the whole system: one
setup, two operations (the second proves the loop can go on: a migration back, a retype
back, a second revert) and the teardown, without errors."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from cinderblock.cli.bench import lag_summary
from cinderblock.cli.bench_scenarios import SCENARIOS, Api, Scenario
from cinderblock.cli.lag import LagProbe
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


async def test_lag_probe_reads_every_consumer_of_the_system(system: System) -> None:
    """While nothing happens every consumer is caught up; a burst shows up as lag behind
    the newest event (relay and projector exactly, the durables as upper bounds)."""
    s = system.settings
    probe = LagProbe(s.database_url, s.nats_url, s.stream, s.subject_prefix)
    async with probe:
        await system.available_volume(1)  # something to be caught up with

        running = ("relay", "projector", "sagas", "billing")  # the notifier is off here

        async def quiet() -> dict[str, float] | None:
            reading = await probe.sample()
            return reading if all(reading.get(c) == 0 for c in running) else None

        reading = await system.projected.until(quiet)
        assert set(running) <= set(reading)
        stop = asyncio.Event()
        sampler = asyncio.create_task(probe.run(stop))
        await system.available_volume(1)
        stop.set()
        await sampler
    samples = probe.take()
    assert samples
    assert all(v >= 0 for values in samples.values() for v in values)
    summary = lag_summary(samples)
    assert set(summary) == set(samples)
    assert all(row["p99"] is not None and row["p99"] <= row["max"] for row in summary.values())
