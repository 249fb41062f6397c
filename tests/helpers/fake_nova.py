"""A small Nova-shaped HTTP server for tests: ``POST /v2.1/os-server-external-events``,
answered the way Nova's ``server_external_events.py`` does (every event echoed with
``status`` and ``code``; 200 when all were accepted, 207 otherwise), recording every request.

How it answers is chosen per volume (the events' ``tag``), so tests sharing one server do not
see each other: ``ok`` (200), ``codes`` (207 with the given per-server codes), ``not_found``
(404 for the whole request, older Nova), ``flaky`` (500 for the first ``failures`` requests,
then 200), ``hang`` (no answer until the server stops).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def tag(self) -> str | None:
        events = self.body.get("events") if isinstance(self.body, dict) else None
        return events[0].get("tag") if events else None


@dataclass
class Answer:
    mode: str = "ok"
    codes: dict[str, int] = field(default_factory=dict)
    failures: int = 0


class FakeNova:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: dict[str, Answer] = {}
        # When set, a request whose X-Auth-Token is not accepted gets 401 (as Nova's
        # keystonemiddleware answers an expired or revoked token).
        self.token_ok: Callable[[str], bool] | None = None
        # (server, volume) -> Nova's attachment id, for GET os-volume_attachments; lookups
        # are recorded; ``attachments_down`` makes that call answer 503.
        self.volume_attachments: dict[tuple[str, str], str] = {}
        self.lookups: list[tuple[str, str, dict[str, str]]] = []
        self.attachments_down = False
        self.url = ""
        self._arrived = asyncio.Condition()
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def answer(self, volume_id: str, mode: str, **options: Any) -> None:
        self.answers[volume_id] = Answer(mode, **options)

    def requests_for(self, volume_id: str) -> list[Received]:
        return [r for r in self.received if r.tag == volume_id]

    async def until_requests(self, volume_id: str, count: int, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests_for(volume_id)) >= count)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v2.1/os-server-external-events", self._events)
        app.router.add_get(
            "/v2.1/servers/{server}/os-volume_attachments/{volume}", self._volume_attachment
        )
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v2.1"
        return self.url

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _volume_attachment(self, request: web.Request) -> web.Response:
        server, volume = request.match_info["server"], request.match_info["volume"]
        self.lookups.append((server, volume, dict(request.headers)))
        if self.attachments_down:
            return web.json_response({}, status=503)
        found = self.volume_attachments.get((server, volume))
        if found is None:
            return web.json_response(
                {"itemNotFound": {"code": 404, "message": "volume not attached"}}, status=404
            )
        body = {"volumeAttachment": {"attachment_id": found, "serverId": server}}
        return web.json_response({**body})

    async def _events(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
        except ValueError:
            body = None
        received = Received(request.path, dict(request.headers), body)
        async with self._arrived:
            self.received.append(received)
            self._arrived.notify_all()
        if self.token_ok is not None and not self.token_ok(request.headers.get("X-Auth-Token", "")):
            return web.json_response({"error": {"code": 401, "title": "Unauthorized"}}, status=401)
        answer = self.answers.get(received.tag or "", Answer())
        if answer.mode == "hang":
            await self._released.wait()
            return web.json_response({}, status=503)
        if answer.mode == "not_found":
            return web.json_response(
                {"itemNotFound": {"code": 404, "message": "No instances found"}}, status=404
            )
        if answer.mode == "flaky" and len(self.requests_for(received.tag or "")) <= answer.failures:
            return web.json_response(
                {"computeFault": {"code": 500, "message": "Unexpected API Error."}}, status=500
            )
        events = []
        for event in body["events"]:
            code = answer.codes.get(event["server_uuid"], 200)
            status = "completed" if code == 200 else "failed"
            events.append({**event, "status": status, "code": code})
        result = 200 if all(e["code"] == 200 for e in events) else 207
        return web.json_response({"events": events}, status=result)
