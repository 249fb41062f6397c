"""Retype between types that differ in encryption: never in place. Unencrypted → encrypted at
the same size cannot fit (the header takes room) and fails cleanly (source bytes, status,
type and quota as before, migration_status error, no copy left); after an extend by 1 GiB it
works, and so do encrypted → unencrypted and encrypted → encrypted (another cipher)."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

from cinderblock.drivers.copying import content_digest
from cinderblock.drivers.encryption import LUKS1_HEADER, MAGIC
from tests.e2e.conftest import System
from tests.helpers.cinder import LUKS, encrypted_type, new_type

GIB = 2**30
HEAD = b"first bytes of the guest's data"
TAIL = b"last bytes of the guest's data"


def _write(path: Path, data: bytes, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _leftovers(path: Path) -> list[str]:
    return [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")]


async def _volume_of(system: System, vtype: dict, size: int = 1) -> tuple[Any, dict, Path]:
    owner = system.client.as_(project_id=uuid.uuid4().hex)
    created = await owner.create_volume(size, volume_type=vtype["name"])
    volume = await system.until_status(created["id"], "available")
    path = system.driver.volume_path(volume["id"], volume["os-vol-host-attr:host"])
    return owner, volume, path


async def _retype(system: System, vid: str, new_type: str, policy: str | None) -> dict:
    body: dict[str, Any] = {"new_type": new_type}
    if policy is not None:
        body["migration_policy"] = policy
    reply = await system.client.action(vid, {"os-retype": body})
    assert (reply.status, reply.text) == (202, "")
    done = await system.until_volume(vid, lambda v: v is not None and v["status"] != "retyping")
    assert done is not None
    return done


async def _usage(owner: Any, key: str) -> dict:
    reply = await owner.request("GET", f"/os-quota-sets/{owner.project_id}?usage=true")
    assert reply.status == 200, reply.text
    found: dict = reply.json["quota_set"].get(key, {"in_use": 0, "reserved": 0})
    return found


async def test_unencrypted_to_encrypted_same_size_fails_cleanly(system: System) -> None:
    plain = await new_type(system)
    luks = await encrypted_type(system)
    owner, volume, path = await _volume_of(system, plain)
    await asyncio.to_thread(_write, path, HEAD, 0)
    await asyncio.to_thread(_write, path, TAIL, GIB - len(TAIL))
    before = await asyncio.to_thread(content_digest, path)

    done = await _retype(system, volume["id"], luks["name"], "on-demand")

    assert (done["status"], done["volume_type"], done["encrypted"]) == (
        "available",
        plain["name"],
        False,
    )
    assert done["os-vol-mig-status-attr:migstat"] == "error"
    assert done["os-vol-host-attr:host"] == volume["os-vol-host-attr:host"]
    assert await asyncio.to_thread(content_digest, path) == before  # not one byte changed
    assert await asyncio.to_thread(_leftovers, path) == []  # no half-made copy
    for key in (f"volumes_{luks['name']}", f"gigabytes_{luks['name']}"):
        assert (await _usage(owner, key))["reserved"] == 0
        assert (await _usage(owner, key))["in_use"] == 0
    assert (await _usage(owner, f"gigabytes_{plain['name']}"))["in_use"] == 1
    shown = await system.client.as_(version="3.64").show(volume["id"])
    assert "encryption_key_id" not in shown.json["volume"]

    # What the docs say to do: extend by 1 GiB (size + header, rounded up), then retype.
    extend = await system.client.action(volume["id"], {"os-extend": {"new_size": 2}})
    assert extend.status == 202
    await system.until_volume(volume["id"], lambda v: v is not None and v["size"] == 2)
    await system.until_status(volume["id"], "available")
    moved = await _retype(system, volume["id"], luks["name"], "on-demand")
    assert (moved["status"], moved["volume_type"], moved["encrypted"]) == (
        "available",
        luks["name"],
        True,
    )
    assert moved["os-vol-mig-status-attr:migstat"] == "success"
    key_id = (await system.client.as_(version="3.64").show(volume["id"])).json["volume"][
        "encryption_key_id"
    ]
    uuid.UUID(key_id)
    path = system.driver.volume_path(volume["id"], moved["os-vol-host-attr:host"])
    assert (await asyncio.to_thread(_read, path, 0, len(MAGIC))) == MAGIC
    assert (await asyncio.to_thread(_read, path, LUKS1_HEADER, len(HEAD))) == HEAD
    tail_at = LUKS1_HEADER + GIB - len(TAIL)
    assert (await asyncio.to_thread(_read, path, tail_at, len(TAIL))) == TAIL
    assert (await _usage(owner, f"gigabytes_{luks['name']}"))["in_use"] == 2
    assert (await _usage(owner, f"volumes_{plain['name']}"))["in_use"] == 0


async def test_never_policy_refuses_an_encryption_change(system: System) -> None:
    plain = await new_type(system)
    luks = await encrypted_type(system)
    owner, volume, path = await _volume_of(system, plain, size=2)
    for policy in (None, "never"):
        kept = await _retype(system, volume["id"], luks["name"], policy)
        assert (kept["status"], kept["volume_type"], kept["encrypted"]) == (
            "available",
            plain["name"],
            False,
        )
        assert kept["os-vol-mig-status-attr:migstat"] is None  # refused, nothing tried
        assert (await _usage(owner, f"volumes_{luks['name']}"))["reserved"] == 0
    assert await asyncio.to_thread(_read, path, 0, len(MAGIC)) != MAGIC


async def test_encrypted_to_unencrypted_and_to_another_cipher(system: System) -> None:
    luks = await encrypted_type(system)
    cbc = await encrypted_type(system, {**LUKS, "cipher": "aes-cbc-essiv:sha256"})
    plain = await new_type(system)
    new = system.client.as_(version="3.64")
    _, volume, path = await _volume_of(system, luks)
    first_key = (await new.show(volume["id"])).json["volume"]["encryption_key_id"]
    await asyncio.to_thread(_write, path, HEAD, LUKS1_HEADER)  # the payload's first bytes

    other = await _retype(system, volume["id"], cbc["name"], "on-demand")
    assert (other["status"], other["volume_type"], other["encrypted"]) == (
        "available",
        cbc["name"],
        True,
    )
    second_key = (await new.show(volume["id"])).json["volume"]["encryption_key_id"]
    assert second_key != first_key
    path = system.driver.volume_path(volume["id"], other["os-vol-host-attr:host"])
    assert (await asyncio.to_thread(_read, path, LUKS1_HEADER, len(HEAD))) == HEAD
    assert second_key.encode() in await asyncio.to_thread(_read, path, 0, 4096)

    clear = await _retype(system, volume["id"], plain["name"], "on-demand")
    assert (clear["status"], clear["volume_type"], clear["encrypted"]) == (
        "available",
        plain["name"],
        False,
    )
    assert clear["os-vol-mig-status-attr:migstat"] == "success"
    assert "encryption_key_id" not in (await new.show(volume["id"])).json["volume"]
    path = system.driver.volume_path(volume["id"], clear["os-vol-host-attr:host"])
    assert (await asyncio.to_thread(_read, path, 0, len(HEAD))) == HEAD
    assert path.stat().st_size == GIB


async def test_a_failed_copy_to_another_pool_leaves_nothing_behind(system: System) -> None:
    on_a = await new_type(system, extra_specs={"volume_backend_name": "file-a"})
    luks_b = await encrypted_type(system, extra_specs={"volume_backend_name": "file-b"})
    owner, volume, path = await _volume_of(system, on_a, size=2)
    await asyncio.to_thread(_write, path, HEAD, 0)
    before = await asyncio.to_thread(content_digest, path)
    system.faults("retype=corrupt")
    try:
        failed = await _retype(system, volume["id"], luks_b["name"], "on-demand")
    finally:
        system.faults("")
    assert (failed["status"], failed["volume_type"]) == ("available", on_a["name"])
    assert failed["os-vol-mig-status-attr:migstat"] == "error"
    assert failed["os-vol-host-attr:host"] == volume["os-vol-host-attr:host"]
    assert await asyncio.to_thread(content_digest, path) == before
    b_pools = [p.location for p in system.driver.pools() if "@file-b#" in p.location]
    for location in b_pools:
        copy = system.driver.volume_path(volume["id"], location)
        assert not copy.exists()
        assert await asyncio.to_thread(_leftovers, copy) == []
    assert (await _usage(owner, f"gigabytes_{luks_b['name']}"))["reserved"] == 0

    moved = await _retype(system, volume["id"], luks_b["name"], "on-demand")
    assert "@file-b#" in moved["os-vol-host-attr:host"]
    assert (moved["volume_type"], moved["encrypted"]) == (luks_b["name"], True)

    async def old_copy_gone() -> bool:
        return not await asyncio.to_thread(path.exists)

    await system.projected.until(old_copy_gone)


async def test_an_attached_volume_keeps_its_encryption(system: System) -> None:
    plain = await new_type(system)
    luks = await encrypted_type(system)
    owner, volume, path = await _volume_of(system, plain, size=2)
    attach = {"os-attach": {"instance_uuid": str(uuid.uuid4()), "mountpoint": "/dev/vdb"}}
    assert (await system.client.action(volume["id"], attach)).status == 202
    await system.until_status(volume["id"], "in-use")
    kept = await _retype(system, volume["id"], luks["name"], "on-demand")
    assert (kept["status"], kept["volume_type"], kept["encrypted"]) == (
        "in-use",
        plain["name"],
        False,
    )
    assert kept["os-vol-mig-status-attr:migstat"] is None  # refused, no copy was tried
    assert (await _usage(owner, f"volumes_{luks['name']}"))["reserved"] == 0
    assert await asyncio.to_thread(_read, path, 0, len(MAGIC)) != MAGIC
