"""Backend capacity and service heartbeats, reported by the volume service (the sagas) and
read by the API (`GET /scheduler-stats/get_pools`, `GET /os-services`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

# A service whose last report is older than this is "down" (Cinder's service_down_time).
SERVICE_DOWN_AFTER = 60


@dataclass(frozen=True)
class PoolReport:
    name: str  # host@backend#pool
    capacity_gb: int
    allocated_gb: int
    free_gb: int
    multiattach: bool


async def report(
    conn: asyncpg.Connection, pools: Iterable[PoolReport], *, zone: str, scheduler_host: str
) -> None:
    """Upsert every pool and a heartbeat for each backend's cinder-volume and the
    scheduler, in one transaction."""
    pools = list(pools)
    async with conn.transaction():
        await conn.executemany(
            """
            INSERT INTO backend_pools (name, backend, capacity_gb, allocated_gb, free_gb,
                multiattach, updated_at)
            VALUES ($1, split_part($1, '#', 1), $2, $3, $4, $5, now())
            ON CONFLICT (name) DO UPDATE SET capacity_gb = $2, allocated_gb = $3,
                free_gb = $4, multiattach = $5, updated_at = now()
            """,
            [(p.name, p.capacity_gb, p.allocated_gb, p.free_gb, p.multiattach) for p in pools],
        )
        beats = {("cinder-volume", p.name.partition("#")[0]) for p in pools}
        beats.add(("cinder-scheduler", scheduler_host))
        await conn.executemany(
            """
            INSERT INTO services (binary_name, host, zone, updated_at) VALUES ($1, $2, $3, now())
            ON CONFLICT (binary_name, host) DO UPDATE SET zone = $3, updated_at = now()
            """,
            [(binary, host, zone) for binary, host in sorted(beats)],
        )


async def pools(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM backend_pools ORDER BY name")
    return [dict(r) for r in rows]


async def services(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT binary_name, host, zone, disabled, updated_at, "
        f"updated_at > now() - interval '{SERVICE_DOWN_AFTER} seconds' AS up "
        "FROM services ORDER BY binary_name, host"
    )
    return [dict(r) for r in rows]
