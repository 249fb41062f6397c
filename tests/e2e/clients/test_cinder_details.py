"""The last Cinder details (issue 13), driven as unmodified clients drive them
(python-cinderclient where it has the call, raw HTTP otherwise): a migration honours the
volume type's placement as Cinder's scheduler does, a retype into a multiattach type
finishes, revert's refusals, os-reset_status's enums and the image-metadata key rules."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from cinderclient import exceptions as cinder_exc

from tests.e2e.clients.support import Cinder, until
from tests.e2e.clients.test_cinder_actions import HOST, available
from tests.e2e.conftest import System
from tests.helpers.cinder import events_of, new_type

pytestmark = pytest.mark.parametrize("cinder", ["project-in-url"], indirect=True)


def migration_settled(v: Any) -> bool:
    return v.status != "maintenance" and v.migration_status in ("success", "error")


async def test_migration_to_a_backend_the_type_refuses_fails_after_the_202(
    system: System, cinder: Cinder
) -> None:
    """Cinder's scheduler runs the type's filters on the destination (CapabilitiesFilter:
    ``volume_backend_name``, multiattach; CapacityFilter; the pool named): refused, the
    migration ends ``error``, the volume stays where it was, a locked volume is unlocked;
    force_host_copy changes nothing of that."""
    c = cinder.client
    tag = uuid.uuid4().hex[:6]
    on_b = await asyncio.to_thread(c.volume_types.create, f"on-b-{tag}")
    await asyncio.to_thread(on_b.set_keys, {"volume_backend_name": "file-b"})
    volume = await available(c, 1, volume_type=on_b.name)
    home = getattr(volume, HOST)
    assert "@file-b#" in home
    for force, lock in ((False, True), (True, False), (True, True)):
        resp, body = await asyncio.to_thread(
            c.volumes.migrate_volume, volume, "cinderblock@file-a", force, lock
        )
        assert (resp.status_code, body) == (202, None)
        failed = await until(lambda: c.volumes.get(volume.id), migration_settled)
        assert (failed.status, failed.migration_status, getattr(failed, HOST)) == (
            "available",
            "error",
            home,
        )
    assert await asyncio.to_thread(system.driver.volume_path(volume.id, home).exists)
    assert not await asyncio.to_thread(
        system.driver.volume_path(volume.id, "cinderblock@file-a#pool0").exists
    )
    names = await events_of(system, volume.id)
    assert names.count("MigrationFailed") == 3
    assert "MigrationCopying" not in names  # refused before any copy, as the scheduler does

    # A pool the backend does not have: the service is found (202), the scheduler refuses.
    plain = await available(c, 1)
    here = getattr(plain, HOST)
    elsewhere = "cinderblock@file-b" if "@file-a#" in here else "cinderblock@file-a"
    resp, _ = await asyncio.to_thread(
        c.volumes.migrate_volume, plain, f"{elsewhere}#no-such-pool", False, False
    )
    assert resp.status_code == 202
    failed = await until(lambda: c.volumes.get(plain.id), migration_settled)
    assert (failed.migration_status, getattr(failed, HOST)) == ("error", here)
    # The same volume to a pool that exists and suits: moved.
    resp, _ = await asyncio.to_thread(
        c.volumes.migrate_volume, plain, f"{elsewhere}#pool0", False, False
    )
    assert resp.status_code == 202
    moved = await until(lambda: c.volumes.get(plain.id), migration_settled)
    assert (moved.migration_status, getattr(moved, HOST)) == ("success", f"{elsewhere}#pool0")


async def test_migration_of_a_multiattach_volume_needs_a_multiattach_pool(
    system: System, cinder: Cinder
) -> None:
    c = cinder.client
    multi = await new_type(system, extra_specs={"multiattach": "<is> True"})
    volume = await available(c, 1, volume_type=multi["name"])
    assert (volume.multiattach, "@file-b#" in getattr(volume, HOST)) == (True, True)
    resp, _ = await asyncio.to_thread(
        c.volumes.migrate_volume, volume, "cinderblock@file-a", False, False
    )
    assert resp.status_code == 202
    failed = await until(lambda: c.volumes.get(volume.id), migration_settled)
    assert (failed.migration_status, getattr(failed, HOST)) == ("error", getattr(volume, HOST))


VOLUME_STATUSES = (
    "('creating', 'available', 'deleting', 'error', 'error_deleting', 'error_managing', "
    "'managing', 'attaching', 'in-use', 'detaching', 'maintenance', 'restoring-backup', "
    "'error_restoring', 'reserved', 'awaiting-transfer', 'backing-up', 'error_backing-up', "
    "'error_extending', 'downloading', 'uploading', 'retyping', 'extending')"
)


SHOWN_AS = {"managing": "creating", "error_managing": "error"}  # Cinder's view does so


async def test_reset_status_takes_every_status_cinder_takes(system: System, cinder: Cinder) -> None:
    """cinderclient's reset_state (os-reset_status) with every value of Cinder's enums,
    then raw bodies for what the client cannot send; refusals answer Cinder's texts."""
    c = cinder.client
    volume = await available(c, 1)
    statuses = [s.strip("' ") for s in VOLUME_STATUSES.strip("()").split(",")]
    for status in statuses:
        if status in ("deleting", "in-use"):
            continue
        await asyncio.to_thread(c.volumes.reset_state, volume, status.upper())
        shown = await asyncio.to_thread(c.volumes.get, volume.id)
        assert shown.status == SHOWN_AS.get(status, status)
    for migration in ("migrating", "error", "success", "completing", "starting", "none"):
        await asyncio.to_thread(c.volumes.reset_state, volume, None, None, migration)
        shown = await asyncio.to_thread(c.volumes.get, volume.id)
        assert shown.migration_status == (None if migration == "none" else migration)
    await asyncio.to_thread(c.volumes.reset_state, volume, "available", "detached")

    refusals = {
        "deleting": "Cannot reset-state to deleting",
        "in-use": "Cannot reset-state to in-use because volume does not have any attachments.",
        "bogus": f"Volume status: bogus is invalid, valid statuses are: {VOLUME_STATUSES}.",
        "reverting": (
            f"Volume status: reverting is invalid, valid statuses are: {VOLUME_STATUSES}."
        ),
    }
    vid = volume.id
    for status, message in refusals.items():
        reply = await system.client.action(vid, {"os-reset_status": {"status": status}})
        assert (reply.status, reply.json) == (
            400,
            {"badRequest": {"code": 400, "message": message}},
        ), status
    for body, message in (
        (
            {"attach_status": "error_detaching"},
            "Volume attach status: error_detaching is invalid, valid statuses are: "
            "['attached', 'detached'].",
        ),
        (
            {"migration_status": "target:x"},
            "Volume migration status: target:x is invalid, valid statuses are: "
            "('migrating', 'error', 'success', 'completing', 'none', 'starting').",
        ),
        (
            {"status": "", "migration_status": ""},
            "Must specify 'status', 'attach_status' or 'migration_status' for update.",
        ),
        (
            {"colour": "red"},
            "Must specify 'status', 'attach_status' or 'migration_status' for update.",
        ),
    ):
        reply = await system.client.action(vid, {"os-reset_status": body})
        assert (reply.status, reply.json["badRequest"]["message"]) == (400, message), body
    # An empty value is no value, as in Cinder: the other one is written.
    ok = await system.client.action(
        vid, {"os-reset_status": {"status": "", "migration_status": "error"}}
    )
    assert ok.status == 202
    shown = await asyncio.to_thread(c.volumes.get, vid)
    assert (shown.status, shown.migration_status) == ("available", "error")


async def snapshot(c: Any, volume: Any) -> Any:
    made = await asyncio.to_thread(c.volume_snapshots.create, volume.id)
    return await until(lambda: c.volume_snapshots.get(made.id), lambda s: s.status == "available")


async def test_revert_refusals_answer_cinder_s_codes_and_texts(
    system: System, cinder: Cinder
) -> None:
    c = cinder.client
    volume = await available(c, 1)
    vid = volume.id
    v340 = system.client.as_(project_id=cinder.project_id, version="3.40")

    async def refused(snapshot_id: Any) -> tuple[int, dict[str, Any]]:
        reply = await v340.action(vid, {"revert": {"snapshot_id": snapshot_id}})
        return reply.status, reply.json

    def bad(message: str) -> tuple[int, dict[str, Any]]:
        return 400, {"badRequest": {"code": 400, "message": message}}

    def conflict(message: str) -> tuple[int, dict[str, Any]]:
        return 409, {"conflictingRequest": {"code": 409, "message": message}}

    unknown = str(uuid.uuid4())
    assert await refused(unknown) == bad(f"Volume {vid} doesn't have any snapshots.")
    first = await snapshot(c, volume)
    second = await snapshot(c, volume)
    old = await system.client.as_(project_id=cinder.project_id, version="3.39").action(
        vid, {"revert": {"snapshot_id": second.id}}
    )
    assert (old.status, old.json) == (
        404,
        {"itemNotFound": {"code": 404, "message": "The resource could not be found."}},
    )
    not_latest = f"Specified snapshot {{}} is None or not the latest one of volume {vid}."
    assert await refused(first.id) == bad(not_latest.format(first.id))
    assert await refused(None) == bad(not_latest.format(None))
    cannot = f"Can't revert volume {vid} to its latest snapshot {second.id}."

    # Not available: the volume (reset to error), then the snapshot; 409, nothing changes.
    await asyncio.to_thread(c.volumes.reset_state, volume, "error")
    assert await refused(second.id) == conflict(
        f"Invalid volume: {cannot} Volume's status must be 'available'."
    )
    await asyncio.to_thread(c.volumes.reset_state, volume, "available")
    await asyncio.to_thread(c.volume_snapshots.reset_state, second, "error")
    assert await refused(second.id) == conflict(
        f"Invalid snapshot: {cannot} Snapshot's status must be 'available'."
    )
    assert (await asyncio.to_thread(c.volumes.get, vid)).status == "available"
    await asyncio.to_thread(c.volume_snapshots.reset_state, second, "available")

    # The volume grew after the snapshot: cinderclient's own call gets the 400.
    await asyncio.to_thread(c.volumes.extend, volume, 2)
    await until(lambda: c.volumes.get(vid), lambda v: v.status == "available" and v.size == 2)
    with pytest.raises(cinder_exc.BadRequest) as grown:
        await asyncio.to_thread(c.volumes.revert_to_snapshot, volume, second)
    assert grown.value.message == f"{cannot} The volume size must be equal to the snapshot size."
    assert (await asyncio.to_thread(c.volumes.get, vid)).status == "available"


KEY_PATTERN = "'^[a-zA-Z0-9-_:. /]{1,255}$'"


async def test_image_metadata_keys_follow_cinder_s_schema(system: System, cinder: Cinder) -> None:
    """Cinder refuses image-metadata keys by its schema only (characters, 1 to 255): no key
    is reserved, ``image_id`` and Glance's core properties included; values up to 65535
    UTF-8 bytes; maintenance/uploading refuse the change with the volume API's text."""
    c = cinder.client
    volume = await available(c, 1)
    vid = volume.id
    accepted = {
        "image_id": str(uuid.uuid4()),
        "checksum": "abc",
        "container_format": "bare",
        "a/b c:d.e-f_G9": "x" * 300,
        "k" * 255: "x" * 65535,
    }
    _, body = await asyncio.to_thread(c.volumes.set_image_metadata, volume, accepted)
    assert body == {"metadata": accepted}
    _, shown = await asyncio.to_thread(c.volumes.show_image_metadata, volume)
    assert shown == {"metadata": accepted}
    await asyncio.to_thread(c.volumes.delete_image_metadata, volume, ["image_id"])
    _, shown = await asyncio.to_thread(c.volumes.show_image_metadata, volume)
    assert "image_id" not in shown["metadata"]

    for metadata, message in (
        (
            {"bad*key": "v"},
            "Invalid input for field/attribute metadata. Value: {'bad*key': 'v'}. "
            f"'bad*key' does not match any of the regexes: {KEY_PATTERN}",
        ),
        (
            {"": "v"},
            "Invalid input for field/attribute metadata. Value: {'': 'v'}. "
            f"'' does not match any of the regexes: {KEY_PATTERN}",
        ),
        (
            {"k" * 256: "v"},
            f"Invalid input for field/attribute metadata. Value: {{'{'k' * 256}': 'v'}}. "
            f"'{'k' * 256}' does not match any of the regexes: {KEY_PATTERN}",
        ),
        ({"k": 5}, "Invalid input for field/attribute k. Value: 5. 5 is not of type 'string'"),
    ):
        with pytest.raises(cinder_exc.BadRequest) as refused:
            await asyncio.to_thread(c.volumes.set_image_metadata, volume, metadata)
        assert refused.value.message == message
    big = "x" * 65536
    with pytest.raises(cinder_exc.BadRequest) as too_big:
        await asyncio.to_thread(c.volumes.set_image_metadata, volume, {"k": big})
    assert too_big.value.message.endswith(f"'{big}' is not a 'mysql_text'")
    for key, status in (("", 400), ("k" * 256, 400), ("bad*key", 404)):
        reply = await system.client.action(vid, {"os-unset_image_metadata": {"key": key}})
        assert reply.status == status, key  # no pattern on unset: an unknown key is 404
    _, shown = await asyncio.to_thread(c.volumes.show_image_metadata, volume)
    assert "k" not in shown["metadata"]

    await asyncio.to_thread(c.volumes.reset_state, volume, "maintenance")
    with pytest.raises(cinder_exc.BadRequest) as busy:
        await asyncio.to_thread(c.volumes.set_image_metadata, volume, {"k": "v"})
    assert busy.value.message == (
        "Invalid volume: Updating volume metadata is not allowed for volumes in maintenance status."
    )
    with pytest.raises(cinder_exc.BadRequest) as busy:
        await asyncio.to_thread(c.volumes.delete_image_metadata, volume, ["checksum"])
    assert busy.value.message == (
        "Invalid volume: Deleting volume metadata is not allowed for volumes in maintenance status."
    )


async def test_retype_into_a_multiattach_type_from_available_always_finishes(
    system: System, cinder: Cinder
) -> None:
    """cinderclient's retype of an available volume into a ``multiattach="<is> True"`` type
    ends every way Cinder's scheduler ends it, never left ``retyping``: in place on a pool
    that takes multiattach volumes; refused after the 202 on one that does not with policy
    ``never`` (status, type and flag as before, the reason on RetypeFailed); moved to a
    multiattach pool with ``on-demand``."""
    c = cinder.client
    tag = uuid.uuid4().hex[:6]
    multi = await asyncio.to_thread(c.volume_types.create, f"multi-{tag}")
    await asyncio.to_thread(multi.set_keys, {"multiattach": "<is> True"})
    on_a = await asyncio.to_thread(c.volume_types.create, f"on-a-{tag}")
    await asyncio.to_thread(on_a.set_keys, {"volume_backend_name": "file-a"})
    on_b = await asyncio.to_thread(c.volume_types.create, f"on-b-{tag}")
    await asyncio.to_thread(on_b.set_keys, {"volume_backend_name": "file-b"})

    async def retype(volume: Any, policy: str) -> Any:
        resp, _ = await asyncio.to_thread(c.volumes.retype, volume, multi.name, policy)
        assert resp.status_code == 202
        return await until(lambda: c.volumes.get(volume.id), lambda v: v.status != "retyping")

    plain = await available(c, 1, volume_type=on_a.name)  # file-a takes no multiattach volume
    kept = await retype(plain, "never")
    assert (kept.status, kept.volume_type, kept.multiattach) == ("available", on_a.name, False)
    assert (await events_of(system, plain.id))[-1] == "RetypeFailed"
    moved = await retype(plain, "on-demand")
    assert (moved.status, moved.volume_type, moved.multiattach) == ("available", multi.name, True)
    assert "@file-b#" in getattr(moved, HOST)

    await asyncio.to_thread(c.volumes.reserve, plain)  # attaching: the flag may not change
    with pytest.raises(cinder_exc.BadRequest) as busy:
        await asyncio.to_thread(c.volumes.retype, plain, on_a.name, "never")
    assert busy.value.message == (
        "Invalid input received: Invalid volume_type passed, retypes affecting multiattach "
        "are only allowed on available volumes, the specified volume however currently has "
        "a status of: attaching."
    )

    on_multi_pool = await available(c, 1, volume_type=on_b.name)
    in_place = await retype(on_multi_pool, "never")
    assert (in_place.status, in_place.volume_type, in_place.multiattach) == (
        "available",
        multi.name,
        True,
    )
    assert getattr(in_place, HOST) == getattr(on_multi_pool, HOST)


async def test_retype_refuses_a_size_outside_the_new_type_s_limits(
    system: System, cinder: Cinder
) -> None:
    c = cinder.client
    tag = uuid.uuid4().hex[:6]
    bigger = await asyncio.to_thread(c.volume_types.create, f"min5-{tag}")
    await asyncio.to_thread(bigger.set_keys, {"provisioning:min_vol_size": "5"})
    smaller = await asyncio.to_thread(c.volume_types.create, f"max1-{tag}")
    await asyncio.to_thread(smaller.set_keys, {"provisioning:max_vol_size": "1"})
    volume = await available(c, 2)
    for vtype, text in (
        (bigger, f"is less than the minimum required size of '5' for volume type '{bigger.name}'"),
        (
            smaller,
            f"greater than the maximum allowable size of '1' for volume type '{smaller.name}'",
        ),
    ):
        with pytest.raises(cinder_exc.BadRequest) as refused:
            await asyncio.to_thread(c.volumes.retype, volume, vtype.name, "never")
        assert refused.value.message.startswith(
            "Invalid input received: Specified volume size of '2' is "
        )
        assert refused.value.message.endswith(f"{text}.")
    assert (await asyncio.to_thread(c.volumes.get, volume.id)).status == "available"


async def test_retype_finds_a_private_type_as_cinder_s_elevated_lookup_does(
    system: System, cinder: Cinder
) -> None:
    """Cinder's retype resolves the new type with an elevated context (spec 3.11): a member
    retypes into a private type its project was not given access to."""
    private = await new_type(system, **{"os-volume-type-access:is_public": False})
    member = system.client.as_(project_id=cinder.project_id, roles="member")
    assert (await member.request("GET", f"/types/{private['id']}")).status == 404
    created = await member.create_volume(1)
    await system.until_status(created["id"], "available")
    reply = await member.action(created["id"], {"os-retype": {"new_type": private["name"]}})
    assert (reply.status, reply.text) == (202, "")
    done = await until(
        lambda: cinder.client.volumes.get(created["id"]), lambda v: v.status != "retyping"
    )
    assert (done.status, done.volume_type) == ("available", private["name"])
