"""POST /volumes with ``imageRef`` (or ``image_id``), Nova's boot-from-volume with
``source_type=image``: 202 ``creating``, then the image's bytes on a new sparse volume that
is ``available``, bootable and shows the image's metadata (Cinder's create from an image);
refusals append nothing; a failed write after the 202 ends in ``error`` with the quota kept
until the volume is deleted, as Cinder."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from cinderblock.replay.verify import verify
from tests.e2e.conftest import System
from tests.helpers.cinder import MARKS, events_of, image_of, path_of, rows_agree
from tests.helpers.cinder import reimage_client as project
from tests.helpers.client import CinderClient
from tests.helpers.files import read_marks as read


async def created(c: CinderClient, body: dict[str, Any]) -> dict[str, Any]:
    reply = await c.request("POST", "/volumes", body={"volume": body})
    assert reply.status == 202, reply.text
    volume: dict[str, Any] = reply.json["volume"]
    return volume


async def settled(system: System, vid: str) -> dict[str, Any]:
    done = await system.until_volume(vid, lambda v: v is not None and v["status"] != "creating")
    assert done is not None
    return done


async def test_a_volume_from_an_image_has_its_bytes_and_metadata(system: System) -> None:
    c = project(system)
    image_id = await image_of(system, c)

    answer = await created(c, {"size": 2, "imageRef": image_id, "name": "boot"})

    assert (answer["status"], answer["bootable"]) == ("creating", "false")
    done = await settled(system, answer["id"])
    assert (done["status"], done["bootable"]) == ("available", "true")
    meta = done["volume_image_metadata"]
    assert (meta["image_id"], meta["image_name"], meta["disk_format"]) == (
        image_id,
        "rebuild",
        "raw",
    )
    assert {"container_format", "min_disk", "min_ram", "size"} <= meta.keys()
    path = await path_of(system, answer["id"])
    assert await asyncio.to_thread(read, path, MARKS) == MARKS
    st = await asyncio.to_thread(os.stat, path)
    assert st.st_size == 2 * 2**30
    assert st.st_blocks * 512 < 2**25  # still sparse
    assert await events_of(system, answer["id"]) == [
        "Created",
        "ImageSourceSet",
        "ImageWritten",
        "CreateCompleted",
    ]
    leftovers = [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")]
    assert leftovers == []
    await rows_agree(system, answer["id"])


async def test_image_id_and_a_nova_made_image_url_are_accepted(system: System) -> None:
    c = project(system)
    image_id = await image_of(system, c)
    by_id = await created(c, {"size": 1, "image_id": image_id})
    by_url = await created(c, {"size": 1, "imageRef": f"http://glance/v2/images/{image_id}"})
    for vid in (by_id["id"], by_url["id"]):
        done = await settled(system, vid)
        assert (done["status"], done["volume_image_metadata"]["image_id"]) == (
            "available",
            image_id,
        )


async def test_refusals_append_nothing(system: System) -> None:
    c = project(system)
    big_image = await image_of(system, c, size=2)

    def message(reply: Any) -> str:
        assert reply.status == 400, reply.text
        text: str = reply.json["badRequest"]["message"]
        return text

    unknown = await c.request(
        "POST", "/volumes", body={"volume": {"size": 1, "imageRef": str(uuid.uuid4())}}
    )
    assert message(unknown) == (
        "Invalid input received: Invalid image identifier or unable to access requested image."
    )
    not_an_id = await c.request("POST", "/volumes", body={"volume": {"size": 1, "imageRef": "x"}})
    assert "Invalid image identifier" in message(not_an_id)
    too_small = await c.request(
        "POST", "/volumes", body={"volume": {"size": 1, "imageRef": big_image}}
    )
    assert message(too_small) == (
        "Invalid input received: Size of specified image 2GB is larger than volume size 1GB."
    )
    no_size = await c.request("POST", "/volumes", body={"volume": {"imageRef": big_image}})
    assert "must be an integer and greater than 0" in message(no_size)
    both = await c.request(
        "POST",
        "/volumes",
        body={"volume": {"size": 2, "imageRef": big_image, "source_volid": str(uuid.uuid4())}},
    )
    assert (
        message(both) == "Invalid input received: May specify only one of imageRef, source volume"
    )
    listed = await c.request("GET", "/volumes")
    assert len(listed.json["volumes"]) == 1  # the image's source volume: no create appended
    usage = await c.request("GET", f"/os-quota-sets/{c.project_id}?usage=true")
    assert usage.json["quota_set"]["volumes"]["in_use"] == 1  # the image's source volume


async def test_a_failed_write_ends_in_error_with_the_quota_kept(system: System) -> None:
    c = project(system)
    image_id = await image_of(system, c)
    system.faults("reimage=fail")
    try:
        answer = await created(c, {"size": 1, "imageRef": image_id})
        done = await settled(system, answer["id"])
    finally:
        system.faults("")
    assert (done["status"], done["bootable"]) == ("error", "false")
    assert not done.get("volume_image_metadata")
    assert (await events_of(system, answer["id"]))[-1] == "CreateFailed"
    paths = [system.driver.volume_path(answer["id"], p.location) for p in system.driver.pools()]
    assert not [p for p in paths if p.exists()]  # the new file was removed again
    usage = await c.request("GET", f"/os-quota-sets/{c.project_id}?usage=true")
    assert usage.json["quota_set"]["volumes"]["in_use"] == 2
    assert usage.json["quota_set"]["gigabytes"]["in_use"] == 2
    await rows_agree(system, answer["id"])
    assert (await c.request("DELETE", f"/volumes/{answer['id']}")).status == 202
    await system.until_volume(answer["id"], lambda v: v is None)
    usage = await c.request("GET", f"/os-quota-sets/{c.project_id}?usage=true")
    assert usage.json["quota_set"]["gigabytes"]["in_use"] == 1


async def test_replay_rebuilds_what_the_projector_wrote(system: System) -> None:
    """The replay steps of ImageWritten agree with the live projection (``cinderblock
    verify``)."""
    c = project(system)
    image_id = await image_of(system, c)
    answer = await created(c, {"size": 1, "imageRef": image_id})
    assert (await settled(system, answer["id"]))["status"] == "available"

    result = await verify(system.settings.database_url)

    assert result.differences == []
