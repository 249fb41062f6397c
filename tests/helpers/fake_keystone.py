"""A Keystone v3 identity API shaped enough for token validation tests: password auth
(``POST /v3/auth/tokens``) issues tokens, ``GET /v3/auth/tokens`` validates the
``X-Subject-Token`` for a caller holding a valid token, and it records what it was asked."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web


@dataclass
class Token:
    user_id: str
    project_id: str | None
    roles: list[str]
    expires_at: datetime

    def body(self) -> dict[str, Any]:
        token: dict[str, Any] = {
            "methods": ["password"],
            "user": {"id": self.user_id, "name": self.user_id, "domain": {"id": "default"}},
            "roles": [{"id": f"r-{r}", "name": r} for r in self.roles],
            "expires_at": self.expires_at.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "issued_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        }
        if self.project_id is not None:
            token["project"] = {"id": self.project_id, "name": self.project_id}
        else:
            token["system"] = {"all": True}
        return {"token": token}


@dataclass
class FakeKeystone:
    url: str = ""
    tokens: dict[str, Token] = field(default_factory=dict)
    users: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)
    validations: list[str] = field(default_factory=list)  # subject tokens asked about
    logins: int = 0
    down: bool = False

    def issue(
        self,
        user_id: str,
        project_id: str | None,
        roles: list[str],
        *,
        lifetime: timedelta = timedelta(hours=1),
    ) -> str:
        token = "gAAAA" + secrets.token_urlsafe(24)
        self.tokens[token] = Token(user_id, project_id, roles, datetime.now(UTC) + lifetime)
        return token

    async def _login(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        body = await request.json()
        user = body["auth"]["identity"]["password"]["user"]
        known = self.users.get(user["name"])
        if known is None or known[0] != user["password"]:
            return web.json_response({"error": {"code": 401}}, status=401)
        self.logins += 1
        token = self.issue(user["name"], known[1], known[2])
        return web.json_response(
            self.tokens[token].body(), status=201, headers={"X-Subject-Token": token}
        )

    async def _validate(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        caller = self.tokens.get(request.headers.get("X-Auth-Token", ""))
        if caller is None or caller.expires_at <= datetime.now(UTC):
            return web.json_response({"error": {"code": 401}}, status=401)
        subject = request.headers.get("X-Subject-Token", "")
        self.validations.append(subject)
        token = self.tokens.get(subject)
        allow_expired = request.query.get("allow_expired") in ("1", "true", "True")
        if token is None or (token.expires_at <= datetime.now(UTC) and not allow_expired):
            return web.json_response({"error": {"code": 404}}, status=404)
        return web.json_response(token.body(), headers={"X-Subject-Token": subject})


@contextlib.asynccontextmanager
async def fake_keystone() -> AsyncIterator[FakeKeystone]:
    keystone = FakeKeystone()
    app = web.Application()
    app.router.add_post("/v3/auth/tokens", keystone._login)
    app.router.add_get("/v3/auth/tokens", keystone._validate)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    keystone.url = f"http://{host}:{port}"
    try:
        yield keystone
    finally:
        await runner.cleanup()
