"""Many concurrent commands in ONE project, as Terraform, Heat and Nova send them: every one
is answered 2xx, every volume reaches its end state and the quota set adds up. Once against
the in-process system, once against two API processes on one database."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from cinderblock.cli.bench_burst import render_burst, run_burst
from tests.e2e.conftest import System
from tests.helpers.processes import serving
from tests.helpers.servers import Servers


async def test_one_project_burst_all_succeed(system: System) -> None:
    async with aiohttp.ClientSession() as session:
        report = await run_burst(session, [system.url], workers=8, volumes=16)
    assert report.all_ok, render_burst(report) + "\n" + str(report.summary())
    assert [p.statuses[202] for p in report.phases] == [16] * 4


async def test_two_api_processes_on_one_database_pass_the_burst(
    servers: Servers, tmp_path: Path
) -> None:
    """Requests alternate between two API processes: their commands on the project's quota
    conflict in the database and are retried until each is in; none is answered 409."""
    services = ("api", "api", "relay", "projector", "sagas")
    async with serving(servers, tmp_path, services) as deployed, aiohttp.ClientSession() as s:
        assert len(deployed.api_urls) == 2
        report = await run_burst(s, deployed.api_urls, workers=8, volumes=16)
    assert report.all_ok, render_burst(report) + "\n" + str(report.summary())
