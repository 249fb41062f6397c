"""Snapshot metadata endpoints (`/snapshots/{id}/metadata[/{key}]`): Cinder's api-ref samples,
every 400/403/404, and the reader persona."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.e2e.conftest import System
from tests.helpers.apiref import SAMPLES, require_samples
from tests.helpers.cinder import snapshot_of
from tests.helpers.client import CinderClient

KEY_REGEX = "'^[a-zA-Z0-9-_:. ]{1,255}$'"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / "snapshots" / name).read_text())


async def snapshot_with(system: System, metadata: dict[str, str]) -> tuple[CinderClient, str, str]:
    client = system.client.as_(project_id=uuid.uuid4().hex)
    created = await client.create_volume(1)
    vid = (await system.until_status(created["id"], "available"))["id"]
    snap = await snapshot_of(system, client, vid, metadata=metadata)
    return client, snap["id"], f"/snapshots/{snap['id']}/metadata"


async def test_api_ref_samples_and_the_snapshot_view(system: System) -> None:
    require_samples()
    client, sid, base = await snapshot_with(system, {"keep": "me"})

    made = await client.request("POST", base, body=sample("snapshot-metadata-create-request.json"))
    assert (made.status, made.json) == (200, {"metadata": {"keep": "me", "key": "v3"}})
    assert set(made.json) == set(sample("snapshot-metadata-create-response.json"))
    listed = await client.request("GET", base)
    assert listed.json == {"metadata": {"keep": "me", "key": "v3"}}
    assert set(listed.json) == set(sample("snapshot-metadata-show-response.json"))
    shown = await client.request("GET", f"{base}/key")
    assert shown.json == sample("snapshot-metadata-show-key-response.json")

    item = await client.request(
        "PUT", f"{base}/key", body=sample("snapshot-metadata-update-key-request.json")
    )
    assert (item.status, item.json) == (200, sample("snapshot-metadata-update-key-response.json"))
    replaced = await client.request(
        "PUT", base, body=sample("snapshot-metadata-update-request.json")
    )
    assert (replaced.status, replaced.json) == (
        200,
        sample("snapshot-metadata-update-response.json"),
    )
    snapshot = (await client.request("GET", f"/snapshots/{sid}")).json["snapshot"]
    assert snapshot["metadata"] == {"new_key": "new_value"}  # projected into the read model

    gone = await client.request("DELETE", f"{base}/new_key")
    assert (gone.status, gone.text) == (200, "")
    assert (await client.request("GET", base)).json == {"metadata": {}}
    assert (await client.request("GET", f"/snapshots/{sid}")).json["snapshot"]["metadata"] == {}


async def test_extra_top_level_keys_are_ignored_and_slashes_refused(system: System) -> None:
    client, _, base = await snapshot_with(system, {})
    extra = await client.request("POST", base, body={"metadata": {"a": "1"}, "type": "x"})
    assert (extra.status, extra.json) == (200, {"metadata": {"a": "1"}})
    slash = await client.request("POST", base, body={"metadata": {"a/b": "1"}})
    assert slash.status == 400
    assert slash.json["badRequest"]["message"] == (
        "Invalid input for field/attribute metadata. Value: {'a/b': '1'}. "
        f"'a/b' does not match any of the regexes: {KEY_REGEX}"
    )


async def test_bad_bodies_get_cinders_messages(system: System) -> None:
    client, _, base = await snapshot_with(system, {"k": "v"})
    long = "x" * 256
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", base, {}, "'metadata' is a required property"),
        ("POST", base, [1], "[1] is not of type 'object'"),
        (
            "POST",
            base,
            {"metadata": None},
            "Invalid input for field/attribute metadata. Value: None. None is not of type 'object'",
        ),
        (
            "PUT",
            base,
            {"metadata": {"": "x"}},
            "Invalid input for field/attribute metadata. Value: {'': 'x'}. "
            f"'' does not match any of the regexes: {KEY_REGEX}",
        ),
        (
            "POST",
            base,
            {"metadata": {"k": 1}},
            "Invalid input for field/attribute k. Value: 1. 1 is not of type 'string'",
        ),
        (
            "POST",
            base,
            {"metadata": {"k": long}},
            f"Invalid input for field/attribute k. Value: {long}. '{long}' is too long",
        ),
        (
            "POST",
            base,
            {"metadata": {"y" * 256: "v"}},
            "Invalid input for field/attribute metadata. Value: "
            f"{ {'y' * 256: 'v'} }. '{'y' * 256}' does not match any of the regexes: {KEY_REGEX}",
        ),
        ("PUT", f"{base}/k", {"metadata": {"k": "v"}}, "'meta' is a required property"),
        (
            "PUT",
            f"{base}/k",
            {"meta": {}},
            "Invalid input for field/attribute meta. Value: {}. {} should be non-empty",
        ),
        (
            "PUT",
            f"{base}/k",
            {"meta": {"k": "1", "j": "2"}},
            "Invalid input for field/attribute meta. Value: {'k': '1', 'j': '2'}. "
            "{'k': '1', 'j': '2'} has too many properties",
        ),
        ("PUT", f"{base}/k", {"meta": {"other": "1"}}, "Request body and URI mismatch"),
    ]
    for method, path, body, message in cases:
        reply = await client.request(method, path, body=body)
        assert (reply.status, reply.json) == (
            400,
            {"badRequest": {"code": 400, "message": message}},
        ), (method, body)
    assert (await client.request("GET", base)).json == {"metadata": {"k": "v"}}  # unchanged
    # the body is checked before the snapshot is looked up (400 beats 404)
    missing = f"/snapshots/{uuid.uuid4()}/metadata"
    assert (await client.request("POST", missing, body={})).status == 400


async def test_not_found(system: System) -> None:
    client, sid, base = await snapshot_with(system, {"k": "v"})
    nowhere = str(uuid.uuid4())
    for method, path, body in [
        ("GET", f"/snapshots/{nowhere}/metadata", None),
        ("GET", f"/snapshots/{nowhere}/metadata/k", None),
        ("POST", f"/snapshots/{nowhere}/metadata", {"metadata": {"a": "b"}}),
        ("PUT", f"/snapshots/{nowhere}/metadata", {"metadata": {"a": "b"}}),
        ("PUT", f"/snapshots/{nowhere}/metadata/a", {"meta": {"a": "b"}}),
        ("DELETE", f"/snapshots/{nowhere}/metadata/k", None),
        ("GET", "/snapshots/not-a-uuid/metadata", None),
    ]:
        reply = await client.request(method, path, body=body)
        assert reply.status == 404, (method, path, reply.text)
        assert reply.json["itemNotFound"]["message"].startswith("Snapshot "), reply.text
    absent = await client.request("GET", f"{base}/nope")
    assert absent.json == {
        "itemNotFound": {"code": 404, "message": f"Snapshot {sid} has no metadata with key nope."}
    }
    assert (await client.request("DELETE", f"{base}/nope")).status == 404
    stranger = client.as_(project_id=uuid.uuid4().hex, roles="member")
    assert (await stranger.request("GET", base)).status == 404
    hidden = await stranger.request("PUT", f"{base}/k", body={"meta": {"k": "x"}})
    assert hidden.status == 404


async def test_reader_may_read_but_not_change(system: System) -> None:
    client, _, base = await snapshot_with(system, {"k": "v"})
    reader = client.as_(roles="reader")
    assert (await reader.request("GET", base)).json == {"metadata": {"k": "v"}}
    assert (await reader.request("GET", f"{base}/k")).json == {"meta": {"k": "v"}}
    for method, path, body, rule in [
        ("POST", base, {"metadata": {"a": "b"}}, "volume:update_snapshot_metadata"),
        ("PUT", base, {"metadata": {"a": "b"}}, "volume:update_snapshot_metadata"),
        ("PUT", f"{base}/k", {"meta": {"k": "x"}}, "volume:update_snapshot_metadata"),
        ("DELETE", f"{base}/k", None, "volume:delete_snapshot_metadata"),
    ]:
        reply = await reader.request(method, path, body=body)
        assert (reply.status, reply.json["forbidden"]["message"]) == (
            403,
            f"Policy doesn't allow {rule} to be performed.",
        ), (method, path)
    # a key that is not there is 404 even for a reader: Cinder looks before it authorizes
    assert (await reader.request("DELETE", f"{base}/nope")).status == 404
    member = client.as_(roles="member")
    done = await member.request("PUT", f"{base}/k", body={"meta": {"k": "by member"}})
    assert (done.status, done.json) == (200, {"meta": {"k": "by member"}})
    assert (await client.request("GET", base)).json == {"metadata": {"k": "by member"}}
