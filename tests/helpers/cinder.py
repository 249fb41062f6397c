"""Steps the e2e tests share, taken through the Cinder API of the running system: a volume
type (encrypted too), a snapshot made available, a retype settled, a client of a new
project, an image uploaded from a volume, the volume's file and events, another backend;
and the check that the rows rebuilt from the log equal the projected ones."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from cinderblock.audit import state
from cinderblock.audit.log import aggregate_events
from cinderblock.drivers.base import PoolConfig
from cinderblock.readmodels.queries import get_volume
from tests.e2e.conftest import System
from tests.helpers.client import CinderClient
from tests.helpers.files import write_marks

LUKS = {
    "provider": "luks",
    "cipher": "aes-xts-plain64",
    "key_size": 256,
    "control_location": "front-end",
}
# What image_of writes into the volume it uploads.
MARKS = {0: b"rebuilt root disk", 300 * 2**20: b"middle of the image", 2**30 - 9: b"last-byte"}
REIMAGE_VERSION = "3.68"


def project_client(system: System, **changes: Any) -> CinderClient:
    return system.client.as_(project_id=uuid.uuid4().hex, **changes)


def reimage_client(system: System) -> CinderClient:
    """A client of a new project at the microversion of os-reimage."""
    return system.client.as_(project_id=uuid.uuid4().hex, version=REIMAGE_VERSION)


async def new_type(system: System, **fields: object) -> dict:
    name = f"t-{uuid.uuid4().hex[:8]}"
    reply = await system.client.request(
        "POST", "/types", body={"volume_type": {"name": name, **fields}}
    )
    assert reply.status == 200, reply.text
    vtype: dict = reply.json["volume_type"]
    return vtype


async def encrypted_type(system: System, encryption: dict | None = None, **fields: object) -> dict:
    vtype = await new_type(system, **fields)
    reply = await system.client.request(
        "POST", f"/types/{vtype['id']}/encryption", body={"encryption": encryption or LUKS}
    )
    assert reply.status == 200, reply.text
    return vtype


async def snapshot_of(
    system: System, client: CinderClient, volume_id: str, **fields: Any
) -> dict[str, Any]:
    reply = await client.request(
        "POST", "/snapshots", body={"snapshot": {"volume_id": volume_id, **fields}}
    )
    assert reply.status == 202, reply.text
    created = reply.json["snapshot"]
    assert created["status"] == "creating"

    async def available() -> dict[str, Any] | None:
        shown = await client.request("GET", f"/snapshots/{created['id']}")
        snap: dict[str, Any] = shown.json["snapshot"]
        return snap if snap["status"] == "available" else None

    found: dict[str, Any] = await system.projected.until(available)
    return found


async def retyped(system: System, vid: str) -> dict:
    volume = await system.until_volume(vid, lambda v: v is not None and v["status"] != "retyping")
    assert volume is not None
    return volume


async def path_of(system: System, vid: str) -> Path:
    volume = await system.client.volume(vid)
    assert volume is not None
    return system.driver.volume_path(vid, volume["os-vol-host-attr:host"])


async def events_of(system: System, vid: str) -> list[str]:
    rows = await system.pool.fetch(
        "SELECT topic FROM events WHERE originator_id = $1 ORDER BY originator_version",
        uuid.UUID(vid),
    )
    return [r["topic"].rpartition(".")[2] for r in rows]


async def image_of(system: System, c: CinderClient, size: int = 1) -> str:
    """An image made the way this service makes them: a volume with MARKS uploaded."""
    source = (await c.create_volume(size))["id"]
    await system.until_status(source, "available")
    await asyncio.to_thread(write_marks, await path_of(system, source), MARKS)
    body = {"os-volume_upload_image": {"image_name": "rebuild", "disk_format": "raw"}}
    reply = await c.as_(version="3.1").action(source, body)
    assert reply.status == 202, reply.text
    await system.until_status(source, "available")
    image_id: str = reply.json["os-volume_upload_image"]["image_id"]
    return image_id


def other_backend(system: System, host: str) -> str:
    pools = [PoolConfig.parse(p) for p in system.settings.pools]
    backends = {f"{p.host}@{p.backend}" for p in pools}
    return next(b for b in sorted(backends) if b != host.partition("#")[0])


async def rows_agree(system: System, volume_id: str) -> None:
    async with system.pool.acquire() as conn:
        events = await aggregate_events(conn, [uuid.UUID(volume_id)])
        projected = await get_volume(conn, volume_id, project_id=None)
        rebuilt = (await state.rows(conn, events)).volume(volume_id)
    assert projected is not None
    assert rebuilt is not None
    # Folded by the projection's own steps: every column agrees, ``version`` included.
    differ = {k: (rebuilt.get(k), v) for k, v in projected.items() if rebuilt.get(k) != v}
    assert not differ, (volume_id, [e.name for e in events], differ)  # (log, projected)
