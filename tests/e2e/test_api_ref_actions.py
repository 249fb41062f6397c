"""Every volume-action request sample of Cinder's api-ref gets what real Cinder gives it
(spec §8), given an existing target resource: each case prepares the volume the sample
needs, sends the sample as it is (ids of resources the sample names are swapped for ours),
and checks the status Cinder answers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.e2e.conftest import System
from tests.helpers.apiref import SAMPLES, require_samples
from tests.helpers.client import CinderClient

INSTANCE = {"os-attach": {"instance_uuid": str(uuid.uuid4()), "mountpoint": "/dev/vdb"}}

Setup = Callable[[System, CinderClient, str], Awaitable[dict[str, str]]]


async def nothing(system: System, client: CinderClient, vid: str) -> dict[str, str]:
    return {}


async def attached(system: System, client: CinderClient, vid: str) -> dict[str, str]:
    assert (await client.action(vid, INSTANCE)).status == 202
    volume = await client.volume(vid)
    assert volume is not None
    return {"d8777f54-84cf-4809-a679-468ffed56cf1": volume["attachments"][0]["attachment_id"]}


async def reserved(system: System, client: CinderClient, vid: str) -> dict[str, str]:
    assert (await client.action(vid, {"os-reserve": None})).status == 202
    return {}


async def detaching(system: System, client: CinderClient, vid: str) -> dict[str, str]:
    await attached(system, client, vid)
    assert (await client.action(vid, {"os-begin_detaching": None})).status == 202
    return {}


async def with_image_metadata(system: System, client: CinderClient, vid: str) -> dict[str, str]:
    body = {"os-set_image_metadata": {"metadata": {"ramdisk_id": "somedisk"}}}
    assert (await client.action(vid, body)).status == 200
    return {}


async def with_snapshot(system: System, client: CinderClient, vid: str) -> dict[str, str]:
    reply = await client.request("POST", "/snapshots", body={"snapshot": {"volume_id": vid}})
    snap = reply.json["snapshot"]["id"]

    async def ready() -> bool:
        shown = await client.request("GET", f"/snapshots/{snap}")
        return bool(shown.json["snapshot"]["status"] == "available")

    await system.projected.until(ready)
    return {"5aa119a8-d25b-45a7-8d1b-88e127885635": snap}


async def with_target_volume(system: System, client: CinderClient, vid: str) -> dict[str, str]:
    other = await client.create_volume(1)
    await system.until_status(other["id"], "available")
    return {"2b955850-f177-45f7-9f49-ecb2c256d161": other["id"]}


async def with_image(system: System, client: CinderClient, vid: str) -> dict[str, str]:
    other = await client.create_volume(1)
    await system.until_status(other["id"], "available")
    body = {"os-volume_upload_image": {"image_name": "sample"}}
    reply = await client.as_(version="3.1").action(other["id"], body)
    assert reply.status == 202, reply.text
    await system.until_status(other["id"], "available")
    return {
        "71543ced-a8af-45b6-a5c4-a46282108a90": reply.json["os-volume_upload_image"]["image_id"]
    }


CASES: list[tuple[str, Setup, str | None, int]] = [
    ("host-attach-request.json", nothing, None, 400),  # no mountpoint: wrong upstream
    ("volume-attach-request.json", nothing, None, 202),
    ("volume-begin-detaching-request.json", attached, None, 202),
    ("volume-bootable-status-update-request.json", nothing, None, 200),
    ("volume-detach-request.json", attached, None, 202),
    ("volume-extend-request.json", nothing, None, 202),
    ("volume-force-delete-request.json", nothing, None, 202),
    ("volume-force-detach-request.json", attached, None, 202),
    ("volume-image-metadata-set-request.json", nothing, None, 200),
    ("volume-image-metadata-unset-request.json", with_image_metadata, None, 200),
    ("image-metadata-show-request.json", with_image_metadata, None, 200),
    ("volume-initialize-connection-request.json", nothing, None, 200),
    ("volume-os-migrate_volume-request.json", nothing, None, 400),  # node1@lvm is no service
    ("volume-os-migrate_volume_completion-request.json", with_target_volume, None, 200),
    ("volume-os-retype-request.json", nothing, None, 404),  # that type does not exist here
    ("volume-os-reimage-request.json", with_image, "3.68", 202),
    ("volume-os-reimage-request.json", nothing, None, 404),  # below 3.68
    ("volume-readonly-update-request.json", nothing, None, 202),
    ("volume-reserve-request.json", nothing, None, 202),
    ("volume-revert-to-snapshot-request.json", with_snapshot, "3.40", 202),
    ("volume-revert-to-snapshot-request.json", with_snapshot, None, 404),  # below 3.40
    ("volume-roll-detaching-request.json", detaching, None, 202),
    ("volume-status-reset-request.json", nothing, None, 202),
    ("volume-terminate-connection-request.json", reserved, None, 202),
    ("volume-unmanage-request.json", nothing, None, 202),
    ("volume-unreserve-request.json", reserved, None, 202),
    ("volume_actions/volume-upload-to-image-request.json", nothing, "3.1", 202),
    ("volume_actions/volume-upload-to-image-request.json", nothing, None, 400),  # 3.0
]


def load(name: str, ids: dict[str, str]) -> Any:
    text = (SAMPLES / name).read_text()
    for theirs, ours in ids.items():
        text = text.replace(theirs, ours)
    return json.loads(text)


@pytest.mark.parametrize(
    ("name", "setup", "version", "status"), CASES, ids=[f"{c[0]}@{c[2] or '3.0'}" for c in CASES]
)
async def test_action_sample(
    system: System, name: str, setup: Setup, version: str | None, status: int
) -> None:
    require_samples()
    client = system.client.as_(project_id=uuid.uuid4().hex, version=version)
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    ids = await setup(system, client, vid)
    reply = await client.action(vid, load(name, ids))
    assert reply.status == status, reply.text
    if status in (202,) and "upload" not in name:
        assert reply.text == ""


async def test_volume_update_sample(system: System) -> None:
    require_samples()
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    body = load("volumes/volume-update-request.json", {})
    reply = await client.request("PUT", f"/volumes/{vid}", body=body)
    assert reply.status == 200, reply.text
    expected = load("volumes/volume-update-response.json", {})["volume"]
    assert set(reply.json["volume"]) == set(expected)
    shown = await client.volume(vid)
    assert shown is not None
    for key in ("name", "description", "metadata"):
        if key in body["volume"]:
            assert shown[key] == body["volume"][key]
    empty = await client.as_(version="3.53").request("PUT", f"/volumes/{vid}", body={"volume": {}})
    assert empty.status == 400
