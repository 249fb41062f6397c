"""One volume through every layer: HTTP in; read models, files on the backend and the
event log out."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.e2e.conftest import System

GIB = 2**30


def backing_file(system: System, volume: dict) -> Path:
    host = volume["os-vol-host-attr:host"]
    return system.driver.volume_path(volume["id"], host)


async def test_create_becomes_available_with_a_sparse_file(system: System) -> None:
    created = await system.client.create_volume(2, name="first", metadata={"k": "v"})
    assert created["status"] == "creating"
    assert created["bootable"] == "false"
    volume = await system.until_status(created["id"], "available")
    assert volume["name"] == "first"
    assert volume["metadata"] == {"k": "v"}
    path = backing_file(system, volume)
    assert path.stat().st_size == 2 * GIB
    assert path.stat().st_blocks * 512 < GIB  # sparse: nothing written


async def test_extend_goes_through_extending_to_available_and_grows_the_file(
    system: System,
) -> None:
    volume = await system.available_volume(1)
    system.faults("extend=delay:0.3")  # long enough to observe the transient status
    try:
        reply = await system.client.action(volume["id"], {"os-extend": {"new_size": 3}})
        assert reply.status == 202
        assert reply.text == ""
        # read-your-writes: the GET right after the 202 shows the transient status
        during = await system.client.volume(volume["id"])
        assert during is not None
        assert during["status"] == "extending"
        assert during["size"] == 1
        done = await system.until_status(volume["id"], "available")
    finally:
        system.faults("")
    assert done["size"] == 3
    assert backing_file(system, done).stat().st_size == 3 * GIB


async def test_set_bootable_answers_200_with_empty_body(system: System) -> None:
    volume = await system.available_volume(1)
    reply = await system.client.action(volume["id"], {"os-set_bootable": {"bootable": "yes"}})
    assert (reply.status, reply.text) == (200, "")
    shown = await system.client.volume(volume["id"])
    assert shown is not None
    assert shown["bootable"] == "true"


async def test_extend_backend_failure_ends_in_error_extending(system: System) -> None:
    volume = await system.available_volume(1)
    system.faults("extend=fail")
    try:
        reply = await system.client.action(volume["id"], {"os-extend": {"new_size": 2}})
        assert reply.status == 202
        failed = await system.until_status(volume["id"], "error_extending")
    finally:
        system.faults("")
    assert failed["size"] == 1
    assert backing_file(system, failed).stat().st_size == 1 * GIB


async def test_extend_without_capacity_restores_previous_status(system: System) -> None:
    volume = await system.available_volume(1)
    system.faults("extend=capacity")
    try:
        reply = await system.client.action(volume["id"], {"os-extend": {"new_size": 2}})
        assert reply.status == 202

        async def back() -> bool:
            v = await system.client.volume(volume["id"])
            return (
                v is not None
                and v["status"] == "available"
                and v["updated_at"] != volume["updated_at"]
            )

        await system.projected.until(back)
    finally:
        system.faults("")
    shown = await system.client.volume(volume["id"])
    assert shown is not None
    assert (shown["status"], shown["size"]) == ("available", 1)


async def test_delete_removes_volume_and_file(system: System) -> None:
    volume = await system.available_volume(1)
    path = backing_file(system, volume)
    assert path.exists()
    reply = await system.client.request("DELETE", f"/volumes/{volume['id']}")
    assert (reply.status, reply.text) == (202, "")
    await system.until_volume(volume["id"], lambda v: v is None)
    assert not await asyncio.to_thread(path.exists)


async def test_two_concurrent_extends_one_wins(system: System) -> None:
    volume = await system.available_volume(1)
    system.faults("extend=delay:0.2")
    try:
        replies = await asyncio.gather(
            system.client.action(volume["id"], {"os-extend": {"new_size": 2}}),
            system.client.action(volume["id"], {"os-extend": {"new_size": 3}}),
        )
        statuses = sorted(r.status for r in replies)
        assert statuses == [202, 400], [r.text for r in replies]
        loser = next(r for r in replies if r.status == 400)
        assert "status must be" in loser.json["badRequest"]["message"]
        assert "currently extending" in loser.json["badRequest"]["message"]
        done = await system.until_status(volume["id"], "available")
    finally:
        system.faults("")
    winner_size = 2 if replies[0].status == 202 else 3
    assert done["size"] == winner_size
    names = await system.pool.fetch(
        "SELECT topic FROM events WHERE originator_id = $1 ORDER BY originator_version",
        uuid.UUID(volume["id"]),
    )
    topics = [r["topic"].rpartition(".")[2] for r in names]
    assert topics == ["Created", "CreateCompleted", "ExtendRequested", "Extended"]
