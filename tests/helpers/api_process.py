"""An API of its own beside a test's system (in keystone mode, say), started and stopped as
`cinderblock serve api` does, and a small client for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from cinderblock.api import app as api
from cinderblock.config.settings import Settings

WWW_AUTHENTICATE_URI = "https://keystone.example/v3"


def keystone_settings(
    base: Settings, auth_url: str, username: str, password: str, **more: Any
) -> Settings:
    """``base`` with auth_strategy keystone against ``auth_url``, as ``username``."""
    return base.model_copy(
        update={
            "auth_strategy": "keystone",
            "keystone_auth_url": auth_url,
            "keystone_www_authenticate_uri": WWW_AUTHENTICATE_URI,
            "keystone_username": username,
            "keystone_password": password,
            **more,
        }
    )


@contextlib.asynccontextmanager
async def api_serving(settings: Settings) -> AsyncIterator[str]:
    """`api.run` with ``settings`` on a port of its own until the context ends; yields its
    base URL."""
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    own = settings.model_copy(update={"port": 0})
    task = asyncio.create_task(api.run(own, stop=stop, ready=ready.set_result))
    try:
        yield await asyncio.wait_for(asyncio.shield(ready), 30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@dataclass
class ApiClient:
    url: str
    session: aiohttp.ClientSession

    async def call(
        self,
        method: str,
        path: str,
        token: str | None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        """(status, JSON or text body, headers) of one request with ``token``."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["X-Auth-Token"] = token
        async with self.session.request(method, self.url + path, json=body, headers=hdrs) as r:
            data = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, data, r.headers
