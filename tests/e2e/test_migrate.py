"""os-migrate_volume moves the bytes to another backend, verifies them, switches the host
and removes the old copy; a corrupted copy ends in migration_status error, nothing lost."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from tests.e2e.conftest import System
from tests.helpers.cinder import other_backend

MARKS = {0: b"first-block", 3 * 2**29: b"middle", 2 * 2**30 - 16: b"last-bytes"}


def write_marks(path: Path) -> None:
    with path.open("r+b") as f:
        for offset, data in MARKS.items():
            f.seek(offset)
            f.write(data)


def read_marks(path: Path) -> dict[int, bytes]:
    with path.open("rb") as f:
        found = {}
        for offset, data in MARKS.items():
            f.seek(offset)
            found[offset] = f.read(len(data))
        return found


async def test_migrate_copies_verifies_and_switches(system: System) -> None:
    volume = await system.available_volume(2)
    vid, source = volume["id"], volume["os-vol-host-attr:host"]
    old_path = system.driver.volume_path(vid, source)
    await asyncio.to_thread(write_marks, old_path)
    target = other_backend(system, source)
    body = {"os-migrate_volume": {"host": target, "lock_volume": True}}
    reply = await system.client.action(vid, body)
    assert (reply.status, reply.text) == (202, "")
    moved = await system.until_volume(
        vid, lambda v: v is not None and v["migration_status"] in ("success", "error")
    )
    assert moved is not None
    assert moved["migration_status"] == "success"
    assert moved["status"] == "available"
    assert moved["os-vol-host-attr:host"].startswith(target)
    new_path = system.driver.volume_path(vid, moved["os-vol-host-attr:host"])
    assert await asyncio.to_thread(read_marks, new_path) == MARKS
    st = await asyncio.to_thread(os.stat, new_path)
    assert st.st_size == 2 * 2**30
    assert st.st_blocks * 512 < 2**26  # still sparse

    async def old_copy_gone() -> bool:
        return not await asyncio.to_thread(old_path.exists)

    await system.projected.until(old_copy_gone)


async def test_migrate_rules(system: System) -> None:
    volume = await system.available_volume(1)
    vid, source = volume["id"], volume["os-vol-host-attr:host"]
    nowhere = await system.client.action(vid, {"os-migrate_volume": {"host": "x@y"}})
    assert nowhere.status == 400
    assert nowhere.json["badRequest"]["message"] == "Invalid host: No available service named 'x@y'"
    same = await system.client.action(vid, {"os-migrate_volume": {"host": source}})
    assert same.status == 400
    missing = await system.client.action(vid, {"os-migrate_volume": {}})
    assert missing.status == 400
    cluster = await system.client.as_(version="3.16").action(
        vid, {"os-migrate_volume": {"cluster": "c1"}}
    )
    assert cluster.status == 400
    both = await system.client.as_(version="3.16").action(
        vid, {"os-migrate_volume": {"cluster": "c1", "host": source}}
    )
    assert both.status == 400
    member = system.client.as_(project_id=uuid.uuid4().hex, roles="member")
    created = await member.create_volume(1)
    await system.until_status(created["id"], "available")
    denied = await member.action(created["id"], {"os-migrate_volume": {"host": "x@y"}})
    assert denied.status == 403
    done = await system.client.action(
        vid, {"os-migrate_volume_completion": {"new_volume": created["id"]}}
    )
    assert (done.status, done.json) == (200, {"save_volume_id": created["id"]})


async def test_corrupted_copy_fails_cleanly(system: System) -> None:
    volume = await system.available_volume(1)
    vid, source = volume["id"], volume["os-vol-host-attr:host"]
    old_path = system.driver.volume_path(vid, source)
    await asyncio.to_thread(write_marks_small, old_path)
    system.faults("migrate=corrupt")
    try:
        target = other_backend(system, source)
        body = {"os-migrate_volume": {"host": target, "lock_volume": True}}
        assert (await system.client.action(vid, body)).status == 202
        failed = await system.until_volume(
            vid, lambda v: v is not None and v["migration_status"] in ("success", "error")
        )
    finally:
        system.faults("")
    assert failed is not None
    assert (failed["migration_status"], failed["status"]) == ("error", "available")
    assert failed["os-vol-host-attr:host"] == source
    assert await asyncio.to_thread(old_path.exists)
    leftovers = [p for p in system.settings.data_dir.glob(f"volumes/*/*/*{vid}*") if p != old_path]
    assert leftovers == []


def write_marks_small(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(b"precious")
