"""Volume metadata endpoints, with Cinder's api-ref samples."""

from __future__ import annotations

import json
import uuid

from tests.e2e.conftest import System
from tests.helpers.apiref import SAMPLES, require_samples


async def test_metadata_endpoints(system: System) -> None:
    require_samples()
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1, metadata={"keep": "me"})
    vid = (await system.until_status(created["id"], "available"))["id"]
    base = f"/volumes/{vid}/metadata"

    def sample(name: str) -> dict:
        loaded: dict = json.loads((SAMPLES / "volumes" / name).read_text())
        return loaded

    made = await client.request("POST", base, body=sample("volume-metadata-create-request.json"))
    assert (made.status, made.json) == (200, {"metadata": {"keep": "me", "name": "metadata0"}})
    shown = await client.request("GET", f"{base}/name")
    assert shown.json == {"meta": {"name": "metadata0"}}
    key = await client.request(
        "PUT", f"{base}/name", body=sample("volume-metadata-update-key-request.json")
    )
    assert key.json == sample("volume-metadata-update-key-response.json")
    mismatch = await client.request("PUT", f"{base}/other", body={"meta": {"name": "x"}})
    assert mismatch.status == 400
    replaced = await client.request("PUT", base, body=sample("volume-metadata-update-request.json"))
    assert replaced.json == sample("volume-metadata-update-response.json")
    volume = await client.volume(vid)
    assert volume is not None
    assert volume["metadata"] == {"name": "metadata1"}
    gone = await client.request("DELETE", f"{base}/name")
    assert (gone.status, gone.text) == (200, "")
    assert (await client.request("GET", f"{base}/name")).status == 404
    assert (await client.request("DELETE", f"{base}/name")).status == 404
    listed = await client.request("GET", base)
    assert listed.json == {"metadata": {}}
    bad = await client.request("POST", base, body={"metadata": {"": "x"}})
    assert bad.status == 400


async def test_volume_bodies_share_the_snapshot_rules_but_allow_slashes(system: System) -> None:
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    base = f"/volumes/{vid}/metadata"
    slash = await client.request("POST", base, body={"metadata": {"a/b": "1", "k": "v"}})
    assert (slash.status, slash.json) == (200, {"metadata": {"a/b": "1", "k": "v"}})
    extra = await client.request("POST", base, body={"metadata": {"a": "1"}, "type": "x"})
    assert extra.json["badRequest"]["message"] == (
        "Additional properties are not allowed ('type' was unexpected)"
    )
    empty = await client.request("PUT", base, body={"metadata": {"": "1"}})
    assert empty.json["badRequest"]["message"] == (
        "Invalid input for field/attribute metadata. Value: {'': '1'}. "
        "'' does not match any of the regexes: '^[a-zA-Z0-9-_:. /]{1,255}$'"
    )
    absent = await client.request("GET", f"{base}/nope")
    assert absent.json["itemNotFound"]["message"] == f"Volume {vid} has no metadata with key nope."
    reader = client.as_(roles="reader")
    assert (await reader.request("DELETE", f"{base}/nope")).status == 404
    denied = await reader.request("DELETE", f"{base}/k")
    assert denied.json["forbidden"]["message"] == (
        "Policy doesn't allow volume:delete_volume_metadata to be performed."
    )
