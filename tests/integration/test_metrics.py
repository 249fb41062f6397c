"""Watching the API: ``GET /metrics`` across two api processes on one port (the figures of
both, whichever answers the scrape, with route templates and no ids), and the access log
line of a request in each ``--log-format``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from cinderblock.cli.processes import claim_port
from cinderblock.config.settings import Settings
from cinderblock.runtime.metrics import LogTally, MultiprocessDir, SharedState
from tests.helpers.api_process import api_serving
from tests.helpers.processes import serving
from tests.helpers.servers import Servers, fresh_database

HOST = "127.0.0.1"
VOLUME_ROUTE = "/v3/{project_id}/volumes/{volume_id}"
MISSING = 12  # GETs of volumes that do not exist
EXTENDS = 6  # os-extend of a volume that does not exist
BOGUS = 3  # actions no one knows
SCRAPES = 6


async def _call(method: str, url: str, **kw: object) -> tuple[int, str]:
    """One request on a connection of its own, so the kernel picks a process for each."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        http.request(method, url, **kw) as resp,  # type: ignore[arg-type]
    ):
        return resp.status, await resp.text()


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _requests(samples: list[tuple[str, dict[str, str], float]], **labels: str) -> float:
    return sum(
        value
        for name, found, value in samples
        if name == "cinderblock_http_requests_total"
        and all(found.get(k) == v for k, v in labels.items())
    )


async def test_metrics_sum_both_api_processes_and_name_no_volume(
    servers: Servers, tmp_path: Path
) -> None:
    port = claim_port(HOST, 0)
    shared = MultiprocessDir.for_address(HOST, port).path
    project = uuid.uuid4().hex
    base = f"http://{HOST}:{port}/v3/{project}/volumes"
    token = {"X-Auth-Token": f"admin:{project}"}
    ids = [str(uuid.uuid4()) for _ in range(MISSING + EXTENDS + BOGUS)]
    async with serving(servers, tmp_path, ("api", "api"), port=port) as deployed:
        answers = await asyncio.gather(
            *(_call("GET", f"{base}/{vid}", headers=token) for vid in ids[:MISSING]),
            *(
                _call(
                    "POST",
                    f"{base}/{vid}/action",
                    headers=token,
                    json={"os-extend": {"new_size": 2}},
                )
                for vid in ids[MISSING : MISSING + EXTENDS]
            ),
            *(
                _call("POST", f"{base}/{vid}/action", headers=token, json={f"os-{vid}": {}})
                for vid in ids[MISSING + EXTENDS :]
            ),
        )
        assert [status for status, _ in answers] == [404] * (MISSING + EXTENDS) + [400] * BOGUS
        # Both processes answered some: each wrote its own counter file.
        writers = {p.name for p in shared.glob("counter_*.db")}
        assert len(writers) == 2, writers
        assert len(list((shared / "members").iterdir())) == 2

        for _ in range(SCRAPES):  # a new connection each: either process may answer
            status, text = await _call("GET", f"http://{HOST}:{port}/metrics")
            assert status == 200
            for vid in ids:
                assert vid not in text
            assert project not in text
            samples = _samples(text)
            read = {"method": "GET", "route": VOLUME_ROUTE, "status": "404", "action": ""}
            assert _requests(samples, **read) == MISSING
            route = {"method": "POST", "route": f"{VOLUME_ROUTE}/action"}
            assert _requests(samples, **route, action="os-extend", status="404") == EXTENDS
            assert _requests(samples, **route, action="unknown", status="400") == BOGUS
            assert _requests(samples, **route) == EXTENDS + BOGUS
            count = {
                (name, found.get("route")): value
                for name, found, value in samples
                if name == "cinderblock_http_request_duration_seconds_count"
            }
            assert count[("cinderblock_http_request_duration_seconds_count", VOLUME_ROUTE)] == (
                MISSING
            )
            gauges = {name: value for name, found, value in samples if not found}
            assert gauges["cinderblock_database_up"] == 1
            assert gauges["cinderblock_nats_up"] == 1
            assert gauges["cinderblock_http_requests_in_progress"] == 1  # the scrape itself
            events = {
                found["aggregate_type"]: value
                for name, found, value in samples
                if name == "cinderblock_events_total"
            }
            assert events["VolumeType"] >= 1  # the default type either process bootstrapped
        await _counts_in_chunks_equal_counts_at_once(deployed.database_url)
    assert not shared.exists()  # the last process out removed it


async def test_requests_the_parser_refuses_are_counted(settings: Settings) -> None:
    """They reach no route or middleware: counted under route ``unparsed``."""
    async with api_serving(settings) as url:
        host, _, port = url.removeprefix("http://").rpartition(":")
        for raw in (b"GARBAGE\r\n\r\n", b"FOO /v3/ HTTP/1.1\r\nHost: x\r\n\r\n"):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(raw)
            assert b" 400 " in (await asyncio.wait_for(reader.read(), 20)).split(b"\r\n")[0]
            writer.close()
            await writer.wait_closed()
        status, text = await _call("GET", f"{url}/metrics")
    assert status == 200
    assert _requests(_samples(text), route="unparsed", status="400", method="other") == 2


async def test_a_server_that_does_not_answer_reads_down(pool: asyncpg.Pool) -> None:
    """NATS unreachable: nats_up 0 at once (no reconnecting in the background), the
    database's figures still there."""
    shared = SharedState("nats://127.0.0.1:1", "NO_STREAM")
    try:
        async with asyncio.timeout(5):
            await shared.refresh(pool)
    finally:
        await shared.close()
    found = {m.name: m for m in shared.collect()}
    assert found["cinderblock_nats_up"].samples[0].value == 0
    assert found["cinderblock_database_up"].samples[0].value == 1
    assert "cinderblock_consumer_pending_messages" not in found
    assert "cinderblock_log_consumer_lag_events" in found


async def _counts_in_chunks_equal_counts_at_once(database_url: str) -> None:
    """A long log is counted over several scrapes, a chunk at a time: the same counts."""
    conn = await asyncpg.connect(database_url)
    try:
        whole, chunked = LogTally(), LogTally()
        assert await whole.catch_up(conn)
        chunks = 1
        while not await chunked.catch_up(conn, limit=1):
            chunks += 1
        total = await conn.fetchval("SELECT count(*) FROM events")
    finally:
        await conn.close()
    assert chunked.counts == whole.counts
    assert sum(whole.counts.values()) == total == chunks - 1


@contextlib.asynccontextmanager
async def _api(
    database_url: str, nats_url: str, tmp_path: Path, log_format: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`cinderblock --log-format <format> serve api` on a port of its own."""
    env = {
        **os.environ,
        "CINDERBLOCK_DATABASE_URL": database_url,
        "CINDERBLOCK_NATS_URL": nats_url,
        "CINDERBLOCK_DATA_DIR": str(tmp_path),
        "CINDERBLOCK_PORT": "0",
        "CINDERBLOCK_LOG_LEVEL": "INFO",
    }
    env.pop("CINDERBLOCK_LOG_FORMAT", None)
    exe = str(Path(sys.executable).parent / "cinderblock")
    proc = await asyncio.create_subprocess_exec(
        *(exe, "--log-format", log_format, "serve", "api"),
        env=env,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        await proc.stderr.read()
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def _line(proc: asyncio.subprocess.Process, needle: str) -> str:
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while line := await proc.stderr.readline():
            if needle in line.decode():
                return line.decode().strip()
    raise AssertionError(f"no line with {needle!r}")


async def test_access_log_lines_in_json_and_in_text(servers: Servers, tmp_path: Path) -> None:
    project, vid = uuid.uuid4().hex, str(uuid.uuid4())
    token = {"X-Auth-Token": f"alice:{project}"}
    async with (
        fresh_database(servers) as url,
        _api(url, servers.nats_url, tmp_path, "json") as as_json,
        _api(url, servers.nats_url, tmp_path, "text") as as_text,
    ):
        listening, listening_line = await asyncio.gather(
            _line(as_json, "api listening"), _line(as_text, "api listening")
        )
        urls = json.loads(listening)["url"], listening_line.partition(" url=")[2].split()[0]
        for base in urls:
            status, _ = await _call("GET", f"{base}/v3/{project}/volumes/{vid}", headers=token)
            assert status == 404
        entry = json.loads(await _line(as_json, "cinderblock.api.access"))
        line = await _line(as_text, "cinderblock.api.access")

    assert entry["message"].startswith(f"GET {VOLUME_ROUTE} 404 ")
    assert (entry["method"], entry["route"], entry["status"]) == ("GET", VOLUME_ROUTE, 404)
    assert (entry["project_id"], entry["user_id"]) == (project, "alice")
    assert entry["request_id"].startswith("req-")
    assert entry["duration_ms"] > 0
    assert entry["fault"] == f"Volume {vid} could not be found."

    assert not line.startswith("{")
    assert f"INFO cinderblock.api.access GET {VOLUME_ROUTE} 404 " in line
    fields = line.split(" ms ", 1)[1]
    for field in ("method=GET", f"route={VOLUME_ROUTE}", "status=404", f"project_id={project}"):
        assert field in fields, line
    assert " request_id=req-" in fields
    assert " duration_ms=" in fields
