"""Connecting to NATS: one server or a cluster's several, reconnect forever, drain on the
way out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats
import nats.errors
from nats.aio.client import Client

# Seconds before a server just tried is tried again. The other servers of a cluster are
# tried at once: a client whose server died is on another within about a second.
RECONNECT_TIME_WAIT = 1
# Seconds between pings, and pings unanswered before the connection counts as lost: a
# server whose host vanished without closing the socket is left after about 30 s (nats-py's
# default is 2 minutes each). A killed server process closes its sockets: that is at once.
PING_INTERVAL = 10
MAX_OUTSTANDING_PINGS = 3


def server_urls(url: str) -> list[str]:
    """``CINDERBLOCK_NATS_URL`` as the servers to try: one URL, or a cluster's several
    separated by commas (``nats://n1:4222,nats://n2:4222,nats://n3:4222``). The client
    learns the cluster's other servers from the one it reaches, but a list keeps the first
    connection possible while any node named is up."""
    urls = [u.strip() for u in url.split(",") if u.strip()]
    if not urls:
        raise ValueError(f"no NATS server in {url!r}")
    return urls


@contextlib.asynccontextmanager
async def connect(url: str, name: str) -> AsyncIterator[Client]:
    nc = await nats.connect(
        servers=server_urls(url),
        name=f"cinderblock-{name}",
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=RECONNECT_TIME_WAIT,
        ping_interval=PING_INTERVAL,
        max_outstanding_pings=MAX_OUTSTANDING_PINGS,
        connect_timeout=5,
    )
    try:
        yield nc
    finally:
        with contextlib.suppress(nats.errors.Error, OSError):
            await nc.drain()
