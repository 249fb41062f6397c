"""`cinderblock bench --open-loop` end to end against a small Cinder-shaped server run in the
test's loop, which counts what it is sent: the schedule's requests all arrive, in one
project, spread over the pool, toggling each volume; the reports (and the plot) are
written; every volume is deleted, also when the run is interrupted. Nothing here asserts
a timing."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from cinderblock.cli.bench_open import POOL, run_open_loop_bench, send_times
from cinderblock.cli.bench_plots import MISSING

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class FakeCinder:
    """Volumes that are available as soon as created; os-set_bootable answered 200, or
    `refuse_unbootable` (409) when it sets bootable false."""

    refuse_unbootable: bool = False
    volumes: dict[str, str] = field(default_factory=dict)  # id -> project
    created: int = 0
    deleted: int = 0
    quotas: dict[str, dict[str, int]] = field(default_factory=dict)
    actions: list[tuple[str, str, bool]] = field(default_factory=list)  # project, volume, flag
    acted: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v3/", self._versions)
        app.router.add_put("/v3/{project}/os-quota-sets/{target}", self._quota)
        app.router.add_post("/v3/{project}/volumes", self._create)
        app.router.add_get("/v3/{project}/volumes/{id}", self._show)
        app.router.add_delete("/v3/{project}/volumes/{id}", self._delete)
        app.router.add_post("/v3/{project}/volumes/{id}/action", self._action)
        return app

    async def _versions(self, request: web.Request) -> web.Response:
        return web.json_response({"versions": []})

    async def _quota(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.quotas[request.match_info["target"]] = body["quota_set"]
        return web.json_response(body)

    async def _create(self, request: web.Request) -> web.Response:
        volume = str(uuid.uuid4())
        self.volumes[volume] = request.match_info["project"]
        self.created += 1
        return web.json_response({"volume": {"id": volume}}, status=202)

    def _owned(self, request: web.Request) -> str | None:
        volume = request.match_info["id"]
        return volume if self.volumes.get(volume) == request.match_info["project"] else None

    async def _show(self, request: web.Request) -> web.Response:
        if (volume := self._owned(request)) is None:
            return web.json_response({"itemNotFound": {}}, status=404)
        return web.json_response({"volume": {"id": volume, "status": "available"}})

    async def _delete(self, request: web.Request) -> web.Response:
        if (volume := self._owned(request)) is None:
            return web.json_response({"itemNotFound": {}}, status=404)
        del self.volumes[volume]
        self.deleted += 1
        return web.Response(status=202)

    async def _action(self, request: web.Request) -> web.Response:
        if (volume := self._owned(request)) is None:
            return web.json_response({"itemNotFound": {}}, status=404)
        flag = (await request.json())["os-set_bootable"]["bootable"]
        self.actions.append((request.match_info["project"], volume, flag))
        if len(self.actions) >= 5:
            self.acted.set()
        if self.refuse_unbootable and not flag:
            return web.json_response({"conflictingRequest": {"message": "busy"}}, status=409)
        return web.Response(status=200)


@pytest_asyncio.fixture
async def cinder() -> AsyncIterator[FakeCinder]:
    fake = FakeCinder()
    runner = web.AppRunner(fake.app(), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def _only(out: Path, pattern: str) -> Path:
    (path,) = out.glob(pattern)
    return path


def _names(out: Path, pattern: str = "*") -> list[str]:
    return sorted(p.name for p in out.glob(pattern))


async def test_open_loop_sends_the_schedule_to_one_project_and_cleans_up(
    cinder: FakeCinder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await run_open_loop_bench(cinder.url, rates=[40.0], seconds=0.5, out=tmp_path, plots=True)
    # warm-up (0.5 s for a 0.5 s window) and window, at 40/s
    assert len(cinder.actions) == len(send_times(40.0, 1.0)) == 40
    projects = {project for project, _, _ in cinder.actions}
    assert len(projects) == 1
    assert cinder.quotas == {projects.pop(): {"volumes": -1, "gigabytes": -1}}
    per_volume = Counter(volume for _, volume, _ in cinder.actions)
    assert len(per_volume) == POOL == cinder.created
    assert sorted(per_volume.values()) == [1] * (POOL - 8) + [2] * 8
    for volume in per_volume:  # true, then false: each request changes something
        flags = [flag for _, v, flag in cinder.actions if v == volume]
        assert flags == [True, False][: len(flags)]
    assert cinder.volumes == {}
    assert cinder.deleted == POOL

    report = json.loads((tmp_path / "latest-open.json").read_text())
    (result,) = report["results"]
    assert (result["offered"], result["sent"], result["count"]) == (40.0, 20, 20)
    assert (result["errors"], result["transport_errors"]) == (0, 0)
    assert result["p50_ms"] is not None
    assert report["volumes"] == POOL
    assert report["cleanup_errors"] == []
    stem = _only(tmp_path, "open-*.json").stem
    assert (tmp_path / f"{stem}.md").read_text() == (tmp_path / "latest-open.md").read_text()
    png = (tmp_path / f"{stem}-latency.png").read_bytes()
    assert png.startswith(PNG)
    assert report["plots"] == {"latency against offered load": f"{stem}-latency.png"}
    printed = capsys.readouterr().out
    assert "| 40 |" in printed
    assert f"![latency against offered load]({stem}-latency.png)" in printed


async def test_answers_other_than_200_are_counted_as_errors(
    cinder: FakeCinder, tmp_path: Path
) -> None:
    cinder.refuse_unbootable = True  # requests 32.. of each 64 set bootable false
    await run_open_loop_bench(cinder.url, rates=[40.0], seconds=0.5, out=tmp_path, plots=False)
    (result,) = json.loads((tmp_path / "latest-open.json").read_text())["results"]
    # the window is requests 20..39; 32..39 set bootable false
    assert (result["sent"], result["count"], result["errors"]) == (20, 12, 8)
    assert result["statuses"] == {"409": 8}
    assert "409" in result["error_samples"][0]
    assert _names(tmp_path, "*.png") == []
    assert cinder.volumes == {}


async def test_without_matplotlib_the_report_is_written_and_the_extra_named(
    cinder: FakeCinder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    await run_open_loop_bench(cinder.url, rates=[20.0], seconds=0.5, out=tmp_path, plots=True)
    assert MISSING in capsys.readouterr().err
    assert json.loads((tmp_path / "latest-open.json").read_text())["plots"] == {}
    assert [Path(n).suffix for n in _names(tmp_path)] == [".json", ".md", ".json", ".md"]


async def test_an_interrupted_run_still_deletes_its_volumes(
    cinder: FakeCinder, tmp_path: Path
) -> None:
    run = asyncio.create_task(
        run_open_loop_bench(cinder.url, rates=[40.0], seconds=30, out=tmp_path, plots=False)
    )
    async with asyncio.timeout(30):
        await cinder.acted.wait()
    run.cancel()  # what Ctrl-C does to `cinderblock bench`'s main task
    with pytest.raises(asyncio.CancelledError):
        await run
    assert cinder.created == POOL
    assert cinder.volumes == {}
    assert _names(tmp_path) == []  # no report of an interrupted run
