"""os-reimage (3.68) over HTTP, as Nova's rebuild of a volume-backed server uses it: the
image's bytes replace the volume's (sparse), the volume returns to the status it had, is
bootable and shows the image's metadata; refusals change nothing; a driver failure leaves
the volume in ``error`` with its old bytes (issue 9 item 6)."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from cinderblock.replay.verify import verify
from tests.e2e.conftest import System
from tests.helpers.cinder import MARKS, events_of, image_of, path_of, rows_agree
from tests.helpers.cinder import reimage_client as project
from tests.helpers.client import CinderClient
from tests.helpers.files import read_marks as read
from tests.helpers.files import write_marks as write

OLD = {4096: b"the old root disk", 700 * 2**20: b"old data far in"}


async def volume_with_old_data(system: System, c: CinderClient) -> tuple[str, Path]:
    vid = (await c.create_volume(1))["id"]
    await system.until_status(vid, "available")
    path = await path_of(system, vid)
    await asyncio.to_thread(write, path, OLD)
    return vid, path


async def test_reimage_writes_the_image_and_returns_to_available(system: System) -> None:
    c = project(system)
    image_id = await image_of(system, c)
    vid, path = await volume_with_old_data(system, c)

    reply = await c.action(vid, {"os-reimage": {"image_id": image_id}})

    assert (reply.status, reply.text) == (202, "")
    done = await system.until_volume(vid, lambda v: v is not None and v["status"] != "downloading")
    assert done is not None
    assert (done["status"], done["bootable"]) == ("available", "true")
    assert done["volume_image_metadata"]["image_id"] == image_id
    assert done["volume_image_metadata"]["image_name"] == "rebuild"
    assert await asyncio.to_thread(read, path, MARKS) == MARKS
    zeros = {offset: bytes(len(data)) for offset, data in OLD.items()}
    assert await asyncio.to_thread(read, path, OLD) == zeros
    st = await asyncio.to_thread(os.stat, path)
    assert st.st_size == 2**30
    assert st.st_blocks * 512 < 2**25  # still sparse
    assert (await events_of(system, vid))[-2:] == ["ReimageRequested", "Reimaged"]
    leftovers = [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")]
    assert leftovers == []
    await rows_agree(system, vid)  # what the log rebuilds is what the projector wrote


async def test_reimage_of_a_reserved_volume_for_nova_rebuild(system: System) -> None:
    c = project(system)
    image_id = await image_of(system, c)
    vid, path = await volume_with_old_data(system, c)
    server = str(uuid.uuid4())
    reply = await c.request(
        "POST", "/attachments", body={"attachment": {"volume_uuid": vid, "instance_uuid": server}}
    )
    assert reply.status == 200, reply.text
    attachment = reply.json["attachment"]["id"]
    before = await events_of(system, vid)

    refused = await c.action(vid, {"os-reimage": {"image_id": image_id}})

    assert refused.status == 400
    assert refused.json["badRequest"]["message"] == (
        f"Invalid volume: Volume {vid} status must be available or error, but current status "
        "is reserved."
    )
    assert await events_of(system, vid) == before
    body = {"os-reimage": {"image_id": image_id, "reimage_reserved": "true"}}
    assert (await c.action(vid, body)).status == 202
    done = await system.until_volume(vid, lambda v: v is not None and v["status"] != "downloading")
    assert done is not None
    assert done["status"] == "reserved"
    assert await asyncio.to_thread(read, path, MARKS) == MARKS
    listed = await c.request("GET", f"/attachments?volume_id={vid}")
    assert [a["id"] for a in listed.json["attachments"]] == [attachment]
    await rows_agree(system, vid)


async def test_refusals_change_nothing(system: System) -> None:
    c = project(system)
    big_image = await image_of(system, c, size=2)
    vid, _ = await volume_with_old_data(system, c)
    before = await events_of(system, vid)

    old = await c.as_(version="3.67").action(vid, {"os-reimage": {"image_id": big_image}})
    assert (old.status, old.json) == (
        404,
        {"itemNotFound": {"code": 404, "message": "The resource could not be found."}},
    )
    missing = str(uuid.uuid4())
    unknown = await c.action(vid, {"os-reimage": {"image_id": missing}})
    assert unknown.status == 404
    assert unknown.json["itemNotFound"]["message"] == f"Image {missing} could not be found."
    too_big = await c.action(vid, {"os-reimage": {"image_id": big_image}})
    assert too_big.status == 400
    assert too_big.json["badRequest"]["message"] == (
        "Invalid input received: Size of specified image 2GB is larger than volume size 1GB."
    )
    bad = await c.action(vid, {"os-reimage": {"image_id": big_image, "force": True}})
    assert bad.status == 400
    no_volume = await c.action(str(uuid.uuid4()), {"os-reimage": {"image_id": big_image}})
    assert no_volume.status == 404
    reader = c.as_(roles="reader")
    denied = await reader.action(vid, {"os-reimage": {"image_id": big_image}})
    assert denied.status == 403
    assert "volume:reimage" in denied.json["forbidden"]["message"]
    assert await events_of(system, vid) == before
    assert (await c.volume(vid) or {})["status"] == "available"


async def test_a_failed_write_leaves_error_and_the_old_bytes(system: System) -> None:
    c = project(system)
    image_id = await image_of(system, c)
    vid, path = await volume_with_old_data(system, c)
    system.faults("reimage=fail")
    try:
        assert (await c.action(vid, {"os-reimage": {"image_id": image_id}})).status == 202
        done = await system.until_volume(
            vid, lambda v: v is not None and v["status"] != "downloading"
        )
    finally:
        system.faults("")
    assert done is not None
    assert (done["status"], done["bootable"]) == ("error", "false")
    assert await asyncio.to_thread(read, path, OLD) == OLD
    assert (await events_of(system, vid))[-1] == "ReimageFailed"
    # an error volume can be reimaged again (Cinder), and stays error
    assert (await c.action(vid, {"os-reimage": {"image_id": image_id}})).status == 202
    again = await system.until_volume(vid, lambda v: v is not None and v["status"] != "downloading")
    assert again is not None
    assert again["status"] == "error"
    assert await asyncio.to_thread(read, path, MARKS) == MARKS
    await rows_agree(system, vid)


async def test_replay_rebuilds_what_the_projector_wrote(system: System) -> None:
    """The replay steps of the reimage events (and of the swaps, when they ran before)
    agree with the live projections, row for row (``cinderblock verify``)."""
    c = project(system)
    image_id = await image_of(system, c)
    vid, _ = await volume_with_old_data(system, c)
    assert (await c.action(vid, {"os-reimage": {"image_id": image_id}})).status == 202
    await system.until_volume(vid, lambda v: v is not None and v["status"] == "available")
    system.faults("reimage=fail")
    try:
        failing, _ = await volume_with_old_data(system, c)
        assert (await c.action(failing, {"os-reimage": {"image_id": image_id}})).status == 202
        await system.until_volume(failing, lambda v: v is not None and v["status"] == "error")
    finally:
        system.faults("")

    result = await verify(system.settings.database_url)

    assert result.differences == []


async def test_reimage_of_a_volume_never_placed_ends_in_error(system: System) -> None:
    """An ``error`` volume whose create failed has no backend: accepted (as Cinder), then
    failed by the saga instead of staying ``downloading``."""
    c = project(system)
    image_id = await image_of(system, c)
    system.faults("create=fail")
    try:
        vid = (await c.create_volume(1))["id"]
        await system.until_status(vid, "error")
    finally:
        system.faults("")

    assert (await c.action(vid, {"os-reimage": {"image_id": image_id}})).status == 202

    await system.until_volume(vid, lambda v: v is not None and v["status"] == "error")
    assert (await events_of(system, vid))[-1] == "ReimageFailed"
