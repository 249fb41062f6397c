"""Cinder's own api-ref samples (read in place from the workplace's shared copy): the request
samples of what this service implements get what real Cinder gives them, and our responses
have the sample responses' keys at the same microversion."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import System

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = [
    os.environ.get("CINDERBLOCK_API_REF", ""),
    str(ROOT.parent / "shared" / "cinder-api-ref"),
    "/work/shared/cinder-api-ref",
]
API_REF = next((Path(c) for c in CANDIDATES if c and Path(c, "v3", "samples").is_dir()), None)
pytestmark = pytest.mark.skipif(API_REF is None, reason="Cinder api-ref samples not available")


def sample(name: str) -> Any:
    assert API_REF is not None
    return json.loads((API_REF / "v3" / "samples" / name).read_text())


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("volume-extend-request.json", 202),
        ("volume-bootable-status-update-request.json", 200),
    ],
)
async def test_action_request_samples_are_accepted(system: System, name: str, status: int) -> None:
    volume = await system.available_volume(1)
    reply = await system.client.action(volume["id"], sample(name))
    assert (reply.status, reply.text) == (status, "")


async def test_create_request_sample_is_accepted(system: System) -> None:
    owner = system.client.as_(project_id=os.urandom(16).hex())
    reply = await owner.request(
        "POST", "/volumes", body=sample("volumes/volume-create-request.json")
    )
    assert reply.status == 202, reply.text
    expected = set(sample("volumes/volume-create-response.json")["volume"])
    assert set(reply.json["volume"]) == expected


@pytest.mark.parametrize(
    ("version", "name"),
    [
        (None, "volumes/volume-show-response.json"),
        ("3.13", "volumes/v3.13/volume-show-response.json"),
        ("3.21", "volumes/v3.21/volume-show-response.json"),
        ("3.48", "volumes/v3.48/volume-show-response.json"),
        ("3.61", "volumes/v3.61/volume-show-response.json"),
        ("3.63", "volumes/v3.63/volume-show-response.json"),
        ("3.65", "volumes/v3.65/volume-show-response.json"),
        ("3.69", "volumes/v3.69/volume-show-response.json"),
    ],
)
async def test_show_has_the_sample_keys(system: System, version: str | None, name: str) -> None:
    assert API_REF is not None
    if not (API_REF / "v3" / "samples" / name).exists():
        pytest.skip(f"{name} not in the samples")
    volume = await system.available_volume(1)
    client = system.client.as_(version=version)
    shown = (await client.show(volume["id"])).json["volume"]
    expected = set(sample(name)["volume"])
    expected.discard("volume_image_metadata")  # present only when a volume has image metadata
    assert set(shown) == expected


async def test_version_document_matches_the_sample_shape(system: System) -> None:
    reply = await system.client.request("GET", "", url=f"{system.url}/", headers={})
    ours = reply.json["versions"][0]
    theirs = sample("versions/versions-response.json")["versions"][0]
    assert set(ours) == set(theirs)
    assert {k: ours[k] for k in ("id", "status", "min_version", "version")} == {
        "id": "v3.0",
        "status": "CURRENT",
        "min_version": "3.0",
        "version": "3.71",
    }


@pytest.mark.parametrize(
    ("method", "suffix", "request_name", "response_name"),
    [
        (
            "POST",
            "",
            "snapshot-metadata-create-request.json",
            "snapshot-metadata-create-response.json",
        ),
        ("GET", "", None, "snapshot-metadata-show-response.json"),
        ("GET", "/key", None, "snapshot-metadata-show-key-response.json"),
        (
            "PUT",
            "/key",
            "snapshot-metadata-update-key-request.json",
            "snapshot-metadata-update-key-response.json",
        ),
        (
            "PUT",
            "",
            "snapshot-metadata-update-request.json",
            "snapshot-metadata-update-response.json",
        ),
    ],
)
async def test_snapshot_metadata_samples(
    system: System, method: str, suffix: str, request_name: str | None, response_name: str
) -> None:
    owner = system.client.as_(project_id=os.urandom(16).hex())
    created = await owner.create_volume(1)
    await system.until_status(created["id"], "available")
    made = await owner.request(
        "POST",
        "/snapshots",
        body={"snapshot": {"volume_id": created["id"], "metadata": {"key": "v"}}},
    )
    assert made.status == 202, made.text
    path = f"/snapshots/{made.json['snapshot']['id']}/metadata{suffix}"
    body = sample(f"snapshots/{request_name}") if request_name else None
    reply = await owner.request(method, path, body=body)
    assert reply.status == 200, reply.text
    expected = sample(f"snapshots/{response_name}")
    assert set(reply.json) == set(expected)
    inner = next(iter(expected))
    assert all(isinstance(v, str) for v in reply.json[inner].values())
    if request_name is not None:  # what was sent is what is answered back
        assert sample(f"snapshots/{request_name}")[inner].items() <= reply.json[inner].items()


async def test_type_encryption_samples(system: System) -> None:
    """``volume_type/encryption-type-*``: create, show, one item and update (admin) get
    what Cinder gives them, with the response samples' keys."""
    name = f"enc-{os.urandom(4).hex()}"
    created = await system.client.request("POST", "/types", body={"volume_type": {"name": name}})
    base = f"/types/{created.json['volume_type']['id']}/encryption"
    reply = await system.client.request(
        "POST", base, body=sample("volume_type/encryption-type-create-request.json")
    )
    assert reply.status == 200, reply.text
    expected = sample("volume_type/encryption-type-create-response.json")["encryption"]
    assert set(reply.json["encryption"]) == set(expected)
    shown = await system.client.request("GET", base)
    assert set(shown.json) == set(sample("volume_type/encryption-type-show-response.json"))
    item = await system.client.request("GET", f"{base}/cipher")
    assert item.json == sample("volume_type/encryption-type-specific-specs-show-response.json")
    eid = reply.json["encryption"]["encryption_id"]
    update = sample("volume_type/encryption-type-update-request.json")
    updated = await system.client.request("PUT", f"{base}/{eid}", body=update)
    assert updated.status == 200, updated.text
    assert updated.json == sample("volume_type/encryption-type-update-response.json")
