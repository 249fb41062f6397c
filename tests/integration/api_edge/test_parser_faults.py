"""Requests aiohttp's HTTP parser refuses answer Cinder's JSON fault body, not aiohttp's
plain text: 400 ``badRequest`` for a malformed request line, a method the parser does not
know (``FOO``), a header line over the parser's limit, or bytes that are not HTTP at all.
A registered method the resource does not take is routed and answered 405 ``badMethod`` by
the middleware. Sent over raw sockets to the API as ``run`` serves it, and the API keeps
serving afterwards."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cinderblock.api.app import run
from tests.helpers.servers import Servers, fresh_database, make_settings

pytestmark = pytest.mark.integration

DEADLINE = 20.0
BAD_REQUEST = {
    "badRequest": {
        "code": 400,
        "message": (
            "The server could not comply with the request since it is either "
            "malformed or otherwise incorrect."
        ),
    }
}


@pytest.fixture(scope="module")
async def address(servers: Servers, data_dir: Path) -> AsyncIterator[tuple[str, int]]:
    async with fresh_database(servers) as dsn:
        settings = make_settings(dsn, servers.nats_url, uuid.uuid4().hex[:8], data_dir)
        stop = asyncio.Event()
        url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        serving = asyncio.create_task(run(settings, stop=stop, ready=url.set_result))
        try:
            base = await asyncio.wait_for(asyncio.shield(url), DEADLINE)
            host, _, port = base.removeprefix("http://").rpartition(":")
            yield host, int(port)
        finally:
            stop.set()
            await serving


async def _exchange(address: tuple[str, int], raw: bytes) -> tuple[int, dict[str, str], Any]:
    """Send ``raw`` and read the reply to the end (the server closes after an error)."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(raw)
        await writer.drain()
        head, _, body = (await asyncio.wait_for(reader.read(), DEADLINE)).partition(b"\r\n\r\n")
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    data = json.loads(body) if body else None
    return int(status_line.split()[1]), headers, data


REFUSED = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "unknown method": b"FOO /v3/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "method with a bad character": b"G(T /v3/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "no HTTP version": b"GET /v3/ FTP/1.0\r\nHost: x\r\n\r\n",
    "header line over 8 KiB": (
        b"GET /v3/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (9 * 1024) + b"\r\n\r\n"
    ),
    "not HTTP at all": bytes.fromhex("16030100c4010000c00303") + b"\x00" * 40 + b"\r\n\r\n",
}


@pytest.mark.parametrize("raw", REFUSED.values(), ids=REFUSED.keys())
async def test_what_the_parser_refuses_is_a_cinder_bad_request(
    address: tuple[str, int], raw: bytes
) -> None:
    status, headers, body = await _exchange(address, raw)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert headers["x-openstack-request-id"].startswith("req-")
    assert headers["openstack-api-version"] == "volume 3.0"
    assert body == BAD_REQUEST
    # The connection handler survived: the next request is served as usual.
    status, _, versions = await _exchange(
        address, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 300
    assert "versions" in versions


async def test_a_method_the_resource_does_not_take_is_bad_method(
    address: tuple[str, int],
) -> None:
    status, headers, body = await _exchange(
        address, b"PROPFIND /v3/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 405
    assert headers["content-type"].startswith("application/json")
    assert headers["x-openstack-request-id"].startswith("req-")
    assert body == {
        "badMethod": {"code": 405, "message": "The method is not allowed for this resource."}
    }
