"""A stand-in for Nova's ``POST /os-server-external-events``: accepts every event and counts
the ``volume-extended`` ones per volume (the event's ``tag``), so a notification sent twice
for one extend shows."""

from __future__ import annotations

from collections import Counter

from aiohttp import web


class CountingNova:
    def __init__(self) -> None:
        self.extended: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/os-server-external-events", self._events)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _events(self, request: web.Request) -> web.Response:
        body = await request.json()
        events = []
        for event in body.get("events", []):
            if event.get("name") == "volume-extended":
                self.extended[str(event.get("tag"))] += 1
            events.append({**event, "status": "completed", "code": 200})
        return web.json_response({"events": events})
