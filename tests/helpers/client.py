"""A small Cinder API client for tests: raw HTTP, so tests see exactly what clients see."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class CinderClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        project_id: str | None = None,
        user_id: str = "tester",
        roles: str | None = None,
        version: str | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.project_id = project_id or uuid.uuid4().hex
        self.user_id = user_id
        self.roles = roles
        self.version = version

    def as_(self, **changes: Any) -> CinderClient:
        """Same session, another persona (project, roles, microversion)."""
        fields = {
            "project_id": self.project_id,
            "user_id": self.user_id,
            "roles": self.roles,
            "version": self.version,
        } | changes
        return CinderClient(self.session, self.base_url, **fields)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"X-Auth-Token": f"{self.user_id}:{self.project_id}", "Accept": "application/json"}
        if self.roles is not None:
            h["X-Roles"] = self.roles
        if self.version is not None:
            h["OpenStack-API-Version"] = f"volume {self.version}"
        return h | (extra or {})

    def url(self, path: str) -> str:
        return f"{self.base_url}/v3/{self.project_id}{path}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        url: str | None = None,
    ) -> Reply:
        data = raw
        hdrs = self.headers(headers)
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, url or self.url(path), data=data, headers=hdrs
        ) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.text())

    async def create_volume(self, size: int = 1, **fields: Any) -> dict[str, Any]:
        reply = await self.request("POST", "/volumes", body={"volume": {"size": size, **fields}})
        assert reply.status == 202, reply.text
        volume: dict[str, Any] = reply.json["volume"]
        return volume

    async def show(self, volume_id: str) -> Reply:
        return await self.request("GET", f"/volumes/{volume_id}")

    async def volume(self, volume_id: str) -> dict[str, Any] | None:
        reply = await self.show(volume_id)
        return reply.json["volume"] if reply.status == 200 else None

    async def action(self, volume_id: str, body: Any, **kw: Any) -> Reply:
        return await self.request("POST", f"/volumes/{volume_id}/action", body=body, **kw)
