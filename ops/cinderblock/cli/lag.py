"""Consumer lag while the benchmark runs: how far behind the newest event each consumer is,
in seconds, sampled every ``INTERVAL``.

- relay and projector (position tracked in PostgreSQL): now minus ``recorded_at`` of the oldest
  event past their tracking position (exact).
- JetStream durables (sagas, billing, notifier): now minus ``occurred_at`` of the stream message
  right after the durable's ack floor, when it has anything pending or unacked. The durables
  filter subjects, so that message may be one the durable never gets: the figure is an
  upper bound (never less than the real lag).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import nats
import nats.errors
import nats.js.errors

from cinderblock.bus.connection import server_urls
from cinderblock.cli.target import running_dsn
from cinderblock.config.settings import Settings, SettingsError

INTERVAL = 0.1  # seconds between samples
DURABLES = ("sagas", "billing", "notifier")
TRACKED = {"relay": "relay:{stream}", "projector": "volumes"}

_OLDEST_UNSEEN = """
SELECT e.recorded_at FROM events e
WHERE e.position > coalesce((SELECT position FROM tracking WHERE name = $1), 0)
ORDER BY e.position LIMIT 1
"""


def running_nats_url(data_dir: Path) -> str | None:
    """The URL of the nats-server a `cinderblock dev` runs under ``data_dir`` (if any)."""
    path = Path(data_dir).expanduser().resolve() / "nats" / "nats-server.url"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def lag_probe(settings: Settings) -> LagProbe:
    """A probe on the configured servers, else on the `cinderblock dev` of the data dir."""
    data_dir = Path(settings.data_dir)
    dsn = settings.database_url or running_dsn(data_dir)
    nats_url = settings.nats_url or running_nats_url(data_dir)
    if not dsn or not nats_url:
        raise SettingsError(
            "--lag needs CINDERBLOCK_DATABASE_URL and CINDERBLOCK_NATS_URL, or a "
            f"`cinderblock dev` running under {data_dir}"
        )
    return LagProbe(dsn, nats_url, settings.stream, settings.subject_prefix)


@dataclass
class LagProbe:
    dsn: str
    nats_url: str
    stream: str = "VOLUME_EVENTS"
    prefix: str = ""  # the deployment's subject prefix (durable names start with it)
    samples: dict[str, list[float]] = field(default_factory=dict)
    _pool: asyncpg.Pool | None = None
    _nc: nats.NATS | None = None

    async def __aenter__(self) -> LagProbe:
        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2)
        self._nc = await nats.connect(servers=server_urls(self.nats_url))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._nc is not None:
            await self._nc.close()
        if self._pool is not None:
            await self._pool.close()

    async def sample(self) -> dict[str, float]:
        """One reading: seconds behind, per consumer (0 when caught up)."""
        assert self._pool is not None
        assert self._nc is not None
        lags: dict[str, float] = {}
        async with self._pool.acquire() as conn:
            now: datetime = await conn.fetchval("SELECT clock_timestamp()")
            for consumer, name in TRACKED.items():
                oldest = await conn.fetchval(_OLDEST_UNSEEN, name.format(stream=self.stream))
                lags[consumer] = 0.0 if oldest is None else (now - oldest).total_seconds()
        js = self._nc.jetstream()
        for durable in DURABLES:
            with contextlib.suppress(nats.js.errors.NotFoundError, nats.errors.Error):
                lag = await self._durable_lag(js, f"{self.prefix.replace('.', '-')}{durable}", now)
                if lag is not None:
                    lags[durable] = lag
        return {k: max(v, 0.0) for k, v in lags.items()}

    async def _durable_lag(self, js: object, durable: str, now: datetime) -> float | None:
        info = await js.consumer_info(self.stream, durable)  # type: ignore[attr-defined]
        if not (info.num_pending or info.num_ack_pending):
            return 0.0
        seq = (info.ack_floor.stream_seq if info.ack_floor else 0) + 1
        msg = await js.get_msg(self.stream, seq)  # type: ignore[attr-defined]
        occurred = json.loads(msg.data)["occurred_at"]
        at = datetime.fromisoformat(occurred)
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return (now - at).total_seconds()

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until ``stop``; readings go to ``samples``."""
        while not stop.is_set():
            try:
                reading = await self.sample()
            except (asyncpg.PostgresError, OSError, nats.errors.Error, KeyError, ValueError):
                reading = {}
            for consumer, lag in reading.items():
                self.samples.setdefault(consumer, []).append(lag)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), INTERVAL)

    def take(self) -> dict[str, list[float]]:
        taken, self.samples = self.samples, {}
        return taken
