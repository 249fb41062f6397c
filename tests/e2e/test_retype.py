"""os-retype: in place when the backend suits the new type, a verified move with
migration_policy on-demand, refused (status back, nothing changed) with never."""

from __future__ import annotations

import asyncio
import uuid

from tests.e2e.conftest import System
from tests.helpers.cinder import new_type, retyped, snapshot_of


async def test_retype_in_place(system: System) -> None:
    plain = await new_type(system)
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1)
    volume = await system.until_status(created["id"], "available")
    reply = await client.action(volume["id"], {"os-retype": {"new_type": plain["name"]}})
    assert (reply.status, reply.text) == (202, "")
    done = await retyped(system, volume["id"])
    assert (done["status"], done["volume_type"]) == ("available", plain["name"])
    assert done["os-vol-host-attr:host"] == volume["os-vol-host-attr:host"]
    same = await client.action(volume["id"], {"os-retype": {"new_type": plain["id"]}})
    assert same.status == 400  # already of that type


async def test_retype_moves_data_on_demand_and_refuses_with_never(system: System) -> None:
    on_b = await new_type(system, extra_specs={"volume_backend_name": "file-b"})
    on_a = await new_type(system, extra_specs={"volume_backend_name": "file-a"})
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1, volume_type=on_a["name"])
    volume = await system.until_status(created["id"], "available")
    assert "@file-a#" in volume["os-vol-host-attr:host"]
    path = system.driver.volume_path(volume["id"], volume["os-vol-host-attr:host"])

    never = await client.action(volume["id"], {"os-retype": {"new_type": on_b["name"]}})
    assert never.status == 202
    kept = await retyped(system, volume["id"])
    assert (kept["status"], kept["volume_type"]) == ("available", on_a["name"])

    body = {"os-retype": {"new_type": on_b["name"], "migration_policy": "on-demand"}}
    assert (await client.action(volume["id"], body)).status == 202
    moved = await retyped(system, volume["id"])
    assert (moved["status"], moved["volume_type"]) == ("available", on_b["name"])
    assert "@file-b#" in moved["os-vol-host-attr:host"]

    async def old_copy_gone() -> bool:
        return not await asyncio.to_thread(path.exists)

    await system.projected.until(old_copy_gone)


async def test_retype_request_rules(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    for bad in (
        None,
        {},
        {"new_type": "x", "migration_policy": None},
        {"new_type": "x", "colour": 1},
    ):
        assert (await client.action(vid, {"os-retype": bad})).status == 400, bad
    missing = await client.action(vid, {"os-retype": {"new_type": "no-such-type"}})
    assert missing.status == 404
    multi = await new_type(system, extra_specs={"multiattach": "<is> True"})
    assert (await client.action(vid, {"os-reserve": None})).status == 202
    busy = await client.action(vid, {"os-retype": {"new_type": multi["name"]}})
    assert busy.status == 400  # attaching


async def test_retype_that_must_move_is_refused_while_the_volume_has_snapshots(
    system: System,
) -> None:
    """Cinder: migration policy on-demand is refused when the volume has snapshots (they
    live beside it and would be left behind); an in-place retype is still fine."""
    on_b = await new_type(system, extra_specs={"volume_backend_name": "file-b"})
    on_a = await new_type(system, extra_specs={"volume_backend_name": "file-a"})
    also_a = await new_type(system, extra_specs={"volume_backend_name": "file-a"})
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1, volume_type=on_a["name"])
    volume = await system.until_status(created["id"], "available")
    await snapshot_of(system, client, volume["id"])

    body = {"os-retype": {"new_type": on_b["name"], "migration_policy": "on-demand"}}
    assert (await client.action(volume["id"], body)).status == 202
    kept = await retyped(system, volume["id"])
    assert (kept["status"], kept["volume_type"]) == ("available", on_a["name"])
    assert kept["os-vol-host-attr:host"] == volume["os-vol-host-attr:host"]

    body = {"os-retype": {"new_type": also_a["name"], "migration_policy": "on-demand"}}
    assert (await client.action(volume["id"], body)).status == 202
    done = await retyped(system, volume["id"])
    assert (done["status"], done["volume_type"]) == ("available", also_a["name"])
