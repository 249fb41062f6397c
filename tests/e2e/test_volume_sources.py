"""Volumes created from a snapshot (``snapshot_id``) or from another volume (``source_volid``,
a clone): Cinder's checks at the API, then the source's bytes copied into the new volume in
the source's pool."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from cinderblock.drivers.copying import content_digest
from cinderblock.drivers.encryption import header_of
from tests.e2e.conftest import System
from tests.helpers.cinder import encrypted_type, new_type, project_client, snapshot_of
from tests.helpers.client import CinderClient
from tests.helpers.files import read_at, write_at

GIB = 2**30
DATA = b"bytes of the source volume"
NOT_AVAILABLE = "Invalid snapshot: Originating snapshot status must be one of 'available' values"


async def source_volume(
    system: System, client: CinderClient, size: int = 1, **fields: Any
) -> dict[str, Any]:
    """An available volume with DATA written at 4096 and at its last MiB."""
    created = await client.create_volume(size, **fields)
    volume = await system.until_status(created["id"], "available")
    path = system.driver.volume_path(volume["id"], volume["os-vol-host-attr:host"])
    await asyncio.to_thread(write_at, path, 4096, DATA)
    await asyncio.to_thread(write_at, path, size * GIB - 2**20, DATA)
    return volume


def image(system: System, volume: dict[str, Any]) -> Any:
    return system.driver.volume_path(volume["id"], volume["os-vol-host-attr:host"])


async def digest_of(path: Any) -> str:
    return await asyncio.to_thread(content_digest, path)


async def create_from(client: CinderClient, **fields: Any) -> Any:
    return await client.request("POST", "/volumes", body={"volume": fields})


async def test_volume_from_snapshot_has_its_bytes_type_and_bootable(system: System) -> None:
    plain = await new_type(system)
    client = project_client(system)
    source = await source_volume(system, client, volume_type=plain["name"])
    boot = await client.action(source["id"], {"os-set_bootable": {"bootable": True}})
    assert boot.status == 200
    snap = await snapshot_of(system, client, source["id"])
    await asyncio.to_thread(write_at, image(system, source), 4096, b"X" * len(DATA))

    reply = await create_from(client, snapshot_id=snap["id"], name="from-snap")
    assert reply.status == 202, reply.text
    created = reply.json["volume"]
    assert (created["status"], created["size"]) == ("creating", 1)
    assert (created["snapshot_id"], created["source_volid"]) == (snap["id"], None)
    assert (created["bootable"], created["volume_type"]) == ("true", plain["name"])
    done = await system.until_status(created["id"], "available")
    assert done["os-vol-host-attr:host"] == source["os-vol-host-attr:host"]
    assert done["snapshot_id"] == snap["id"]
    new = image(system, done)
    snapshot_file = system.driver.snapshot_path(snap["id"], source["os-vol-host-attr:host"])
    assert await digest_of(new) == await digest_of(snapshot_file)
    assert await asyncio.to_thread(read_at, new, 4096, len(DATA)) == DATA
    assert new.stat().st_blocks * 512 < GIB // 2  # sparse: only the data was written


async def test_volume_from_snapshot_bigger_than_it_keeps_data_and_grows(system: System) -> None:
    client = project_client(system)
    source = await source_volume(system, client)
    snap = await snapshot_of(system, client, source["id"])
    reply = await create_from(client, snapshot_id=snap["id"], size=3)
    assert reply.status == 202, reply.text
    done = await system.until_status(reply.json["volume"]["id"], "available")
    new = image(system, done)
    assert (done["size"], new.stat().st_size) == (3, 3 * GIB)
    assert await asyncio.to_thread(read_at, new, GIB - 2**20, len(DATA)) == DATA
    assert await asyncio.to_thread(read_at, new, 2 * GIB, 16) == bytes(16)


async def test_volume_from_snapshot_refusals(system: System) -> None:
    client = project_client(system)
    source = await source_volume(system, client, 2)
    snap = await snapshot_of(system, client, source["id"])

    small = await create_from(client, snapshot_id=snap["id"], size=1)
    assert small.status == 400
    assert small.json["badRequest"]["message"] == (
        "Invalid input received: Volume size '1'GB cannot be smaller than the snapshot size "
        "2GB. They must be >= original snapshot size."
    )
    unknown = str(uuid.uuid4())
    missing = await create_from(client, snapshot_id=unknown)
    assert missing.status == 404
    assert missing.json["itemNotFound"]["message"] == f"Snapshot {unknown} could not be found."
    other = await create_from(project_client(system, roles="member,reader"), snapshot_id=snap["id"])
    assert other.status == 404
    both = await create_from(client, snapshot_id=snap["id"], source_volid=source["id"])
    assert both.status == 400
    assert "May specify only one of snapshot, source volume" in both.text

    system.faults("snapshot=fail")
    try:
        failed = await client.request(
            "POST", "/snapshots", body={"snapshot": {"volume_id": source["id"]}}
        )
        assert failed.status == 202
        sid = failed.json["snapshot"]["id"]

        async def in_error() -> bool:
            shown = await client.request("GET", f"/snapshots/{sid}")
            return shown.json["snapshot"]["status"] == "error"

        await system.projected.until(in_error)
    finally:
        system.faults("")
    errored = await create_from(client, snapshot_id=sid)
    assert errored.status == 400
    assert errored.json["badRequest"]["message"] == NOT_AVAILABLE


async def test_volume_from_snapshot_counts_against_quota(system: System) -> None:
    client = project_client(system)
    source = await source_volume(system, client)
    snap = await snapshot_of(system, client, source["id"])
    admin = system.client
    quota = {"quota_set": {"gigabytes": 3}}  # 1 volume + 1 snapshot already
    put = await admin.request("PUT", f"/os-quota-sets/{client.project_id}", body=quota)
    assert put.status == 200, put.text
    over = await create_from(client, snapshot_id=snap["id"], size=2)
    assert over.status == 413
    assert "overLimit" in over.json
    fits = await create_from(client, snapshot_id=snap["id"])
    assert fits.status == 202, fits.text
    await system.until_status(fits.json["volume"]["id"], "available")
    usage = await admin.request("GET", f"/os-quota-sets/{client.project_id}?usage=true")
    assert usage.json["quota_set"]["volumes"]["in_use"] == 2
    assert usage.json["quota_set"]["gigabytes"]["in_use"] == 3


async def test_clone_copies_the_volume_also_in_use(system: System) -> None:
    client = project_client(system)
    source = await source_volume(system, client, 2)
    reply = await create_from(client, source_volid=source["id"])
    assert reply.status == 202, reply.text
    created = reply.json["volume"]
    assert (created["size"], created["source_volid"], created["snapshot_id"]) == (
        2,
        source["id"],
        None,
    )
    done = await system.until_status(created["id"], "available")
    assert done["os-vol-host-attr:host"] == source["os-vol-host-attr:host"]
    assert await digest_of(image(system, done)) == await digest_of(image(system, source))

    attach = {"os-attach": {"instance_uuid": str(uuid.uuid4()), "mountpoint": "/dev/vdb"}}
    assert (await client.action(source["id"], attach)).status == 202
    await system.until_status(source["id"], "in-use")
    in_use = await create_from(client, source_volid=source["id"], size=3)
    assert in_use.status == 202, in_use.text
    bigger = await system.until_status(in_use.json["volume"]["id"], "available")
    assert image(system, bigger).stat().st_size == 3 * GIB
    assert await asyncio.to_thread(read_at, image(system, bigger), 4096, len(DATA)) == DATA


async def test_clone_refusals_and_a_pool_that_does_not_suit_the_type(system: System) -> None:
    client = project_client(system)
    unknown = str(uuid.uuid4())
    missing = await create_from(client, source_volid=unknown)
    assert missing.status == 404
    assert missing.json["itemNotFound"]["message"] == f"Volume {unknown} could not be found."
    on_a = await new_type(system, extra_specs={"volume_backend_name": "file-a"})
    on_b = await new_type(system, extra_specs={"volume_backend_name": "file-b"})
    source = await source_volume(system, client, 2, volume_type=on_a["name"])
    other = await create_from(
        project_client(system, roles="member,reader"), source_volid=source["id"]
    )
    assert other.status == 404
    small = await create_from(client, source_volid=source["id"], size=1)
    assert small.status == 400
    assert "cannot be smaller than original volume size  2GB" in small.text

    # Another backend's type: Cinder's _retype_is_possible refuses it (two volume services,
    # another volume_backend_name), naming the type by id.
    elsewhere = await create_from(client, source_volid=source["id"], volume_type=on_b["name"])
    assert elsewhere.status == 400, elsewhere.text
    assert elsewhere.json["badRequest"]["message"] == (
        f"Invalid input received: Invalid volume_type provided: {on_b['id']} (requested "
        "type is not compatible; either match source volume, or omit type argument)."
    )
    # The same backend but multiattach: accepted, and the source's pool cannot take it.
    multi = await new_type(
        system, extra_specs={"volume_backend_name": "file-a", "multiattach": "<is> True"}
    )
    unsuited = await create_from(client, source_volid=source["id"], volume_type=multi["name"])
    assert unsuited.status == 202, unsuited.text
    failed = await system.until_status(unsuited.json["volume"]["id"], "error")
    assert failed["os-vol-host-attr:host"] is None

    reset = {"os-reset_status": {"status": "error"}}
    assert (await system.client.action(source["id"], reset)).status == 202
    await system.until_status(source["id"], "error")
    errored = await create_from(client, source_volid=source["id"])
    assert errored.status == 400
    assert errored.json["badRequest"]["message"] == (
        "Invalid volume: Unable to create a volume from an originating source volume when its "
        "status is not one of 'available', 'in-use' values"
    )


async def test_a_copy_of_an_encrypted_volume_is_encrypted_with_a_key_of_its_own(
    system: System,
) -> None:
    secret = await encrypted_type(system)
    plain = await new_type(system)
    client = project_client(system)
    created = await client.create_volume(1, volume_type=secret["name"])
    source = await system.until_status(created["id"], "available")
    snap = await snapshot_of(system, client, source["id"])

    refused = await create_from(client, snapshot_id=snap["id"], volume_type=plain["name"])
    assert refused.status == 400
    assert refused.json["badRequest"]["message"] == (
        f"Invalid input received: Invalid volume_type provided: {plain['id']} (requested "
        "type is not compatible; recommend omitting the type argument)."
    )
    reply = await create_from(client, snapshot_id=snap["id"])
    assert reply.status == 202, reply.text
    assert (reply.json["volume"]["encrypted"], reply.json["volume"]["volume_type"]) == (
        True,
        secret["name"],
    )
    done = await system.until_status(reply.json["volume"]["id"], "available")
    theirs = await asyncio.to_thread(header_of, image(system, source))
    ours = await asyncio.to_thread(header_of, image(system, done))
    assert theirs is not None
    assert ours is not None
    assert ours["key_id"] != theirs["key_id"]
    assert {k: v for k, v in ours.items() if k != "key_id"} == {
        k: v for k, v in theirs.items() if k != "key_id"
    }
