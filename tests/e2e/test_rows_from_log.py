"""The rows the API answers commands from while the read model is behind (and the row of a
create's answer, always) are rebuilt from the log by `cinderblock.audit.state`: for every
kind of volume they must equal the rows the projector wrote. A field the two disagree on
would show up as a wrong answer (a create from a snapshot once answered snapshot_id null)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.e2e.conftest import System
from tests.helpers.cinder import encrypted_type, project_client, rows_agree, snapshot_of


async def test_rows_rebuilt_from_the_log_equal_the_projected_ones(system: System) -> None:
    client = project_client(system)
    made: list[dict[str, Any]] = []
    plain = await client.create_volume(1, name="plain", metadata={"k": "v"})
    made.append(await system.until_status(plain["id"], "available"))
    snap = await snapshot_of(system, client, plain["id"])
    reply = await client.request("POST", "/volumes", body={"volume": {"snapshot_id": snap["id"]}})
    assert reply.status == 202, reply.text
    made.append(await system.until_status(reply.json["volume"]["id"], "available"))
    reply = await client.request("POST", "/volumes", body={"volume": {"source_volid": plain["id"]}})
    assert reply.status == 202, reply.text
    made.append(await system.until_status(reply.json["volume"]["id"], "available"))
    secret = await encrypted_type(system)
    encrypted = await client.create_volume(1, volume_type=secret["name"])
    made.append(await system.until_status(encrypted["id"], "available"))
    grown = await client.create_volume(1)
    await system.until_status(grown["id"], "available")
    assert (await client.action(grown["id"], {"os-extend": {"new_size": 2}})).status == 202
    made.append(await system.until_volume(grown["id"], lambda v: bool(v and v["size"] == 2)))
    attached = await client.create_volume(1)
    await system.until_status(attached["id"], "available")
    for body in (
        {"os-reserve": {}},
        {"os-attach": {"instance_uuid": str(uuid.uuid4()), "mountpoint": "/dev/vdb"}},
        {"os-set_bootable": {"bootable": True}},
        {"os-set_image_metadata": {"metadata": {"image_name": "cirros"}}},
    ):
        assert (await client.action(attached["id"], body)).status in (200, 202)
    made.append(await system.until_status(attached["id"], "in-use"))
    for volume in made:
        await rows_agree(system, volume["id"])


async def test_rows_of_volumes_from_an_image_equal_the_projected_ones(system: System) -> None:
    """Made from an image (ImageSourceSet, ImageWritten: bootable, the image's metadata),
    and one whose image write failed (error, nothing of the image)."""
    client = project_client(system)
    source = await client.create_volume(1)
    await system.until_status(source["id"], "available")
    body = {"os-volume_upload_image": {"image_name": "rows", "disk_format": "raw"}}
    reply = await client.as_(version="3.1").action(source["id"], body)
    assert reply.status == 202, reply.text
    image_id = reply.json["os-volume_upload_image"]["image_id"]
    await system.until_status(source["id"], "available")
    made = []
    for fault in ("", "reimage=fail"):
        system.faults(fault)
        try:
            reply = await client.request(
                "POST", "/volumes", body={"volume": {"size": 1, "imageRef": image_id}}
            )
            assert reply.status == 202, reply.text
            vid = reply.json["volume"]["id"]
            made.append(
                await system.until_volume(vid, lambda v: bool(v and v["status"] != "creating"))
            )
        finally:
            system.faults("")
    assert [(v or {}).get("status") for v in made] == ["available", "error"]
    for volume in made:
        await rows_agree(system, (volume or {})["id"])
