"""Connecting to NATS: reconnect forever, drain on the way out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats
import nats.errors
from nats.aio.client import Client


@contextlib.asynccontextmanager
async def connect(url: str, name: str) -> AsyncIterator[Client]:
    nc = await nats.connect(
        url, name=f"cinderblock-{name}", max_reconnect_attempts=-1, connect_timeout=5
    )
    try:
        yield nc
    finally:
        with contextlib.suppress(nats.errors.Error, OSError):
            await nc.drain()
