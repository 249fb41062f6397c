"""os-volume_upload_image: the volume's bytes become an image in the image service (the
local image store here; the Glance v2 adapter is tested against a Glance-shaped server)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from tests.e2e.conftest import System
from tests.helpers.apiref import SAMPLES, require_samples
from tests.helpers.files import read_at, write_at


async def test_upload_copies_the_bytes_into_an_image(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex, version="3.1")
    created = await client.create_volume(1)
    volume = await system.until_status(created["id"], "available")
    path = system.driver.volume_path(volume["id"], volume["os-vol-host-attr:host"])
    await asyncio.to_thread(write_at, path, 2**20, b"bootable bytes")
    body = {
        "os-volume_upload_image": {
            "image_name": "snap-img",
            "disk_format": "raw",
            "container_format": "bare",
            "visibility": "private",
            "protected": False,
            "force": False,
        }
    }
    reply = await client.action(volume["id"], body)
    assert reply.status == 202, reply.text
    answer = reply.json["os-volume_upload_image"]
    assert (answer["status"], answer["image_name"], answer["size"]) == ("uploading", "snap-img", 1)
    await system.until_status(volume["id"], "available")
    image = Path(system.settings.data_dir) / "images" / f"{answer['image_id']}.img"
    assert await asyncio.to_thread(read_at, image, 2**20, 14) == b"bootable bytes"
    record = json.loads(await asyncio.to_thread(image.with_suffix(".json").read_text))
    assert record["status"] == "active"


async def test_upload_request_rules(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    new_keys = {"os-volume_upload_image": {"image_name": "x", "visibility": "private"}}
    assert (await client.action(vid, new_keys)).status == 400  # 3.0: unknown key
    for bad in ({"image_name": None}, {}, {"image_name": "x", "disk_format": "iso"}):
        assert (await client.action(vid, {"os-volume_upload_image": bad})).status == 400
    member = client.as_(roles="member", version="3.1")
    public = {"os-volume_upload_image": {"image_name": "x", "visibility": "public"}}
    assert (await member.action(vid, public)).status == 403
    assert (await client.action(vid, {"os-reserve": None})).status == 202
    busy = await client.action(vid, {"os-volume_upload_image": {"image_name": "x"}})
    assert busy.status == 400  # attaching, and force is off by default


async def test_upload_response_has_the_sample_keys(system: System) -> None:
    require_samples()
    sample = json.loads(
        (SAMPLES / "volume_actions" / "volume-upload-to-image-request.json").read_text()
    )
    expected = json.loads(
        (SAMPLES / "volume_actions" / "volume-upload-to-image-response.json").read_text()
    )
    client = system.client.as_(project_id=uuid.uuid4().hex, version="3.1")
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    reply = await client.action(vid, sample)
    assert reply.status == 202
    assert set(reply.json["os-volume_upload_image"]) == set(expected["os-volume_upload_image"])
    await system.until_status(vid, "available")
