"""Quota sets: show (and usage), defaults, update with enforcement, delete."""

from __future__ import annotations

import json
import uuid

from tests.e2e.conftest import System
from tests.helpers.apiref import SAMPLES, require_samples


async def test_quota_show_update_enforce_delete(system: System) -> None:
    project = uuid.uuid4().hex
    owner = system.client.as_(project_id=project, roles="member")
    admin = system.client
    shown = await owner.request("GET", f"/os-quota-sets/{project}")
    assert shown.status == 200
    quota = shown.json["quota_set"]
    assert (quota["id"], quota["volumes"], quota["gigabytes"]) == (project, 10, 1000)
    assert quota["volumes___DEFAULT__"] == -1
    created = await owner.create_volume(2)
    await system.until_status(created["id"], "available")
    usage = await owner.request("GET", f"/os-quota-sets/{project}?usage=true")
    assert usage.json["quota_set"]["volumes"] == {"limit": 10, "in_use": 1, "reserved": 0}
    assert usage.json["quota_set"]["gigabytes"]["in_use"] == 2
    denied = await owner.request(
        "PUT", f"/os-quota-sets/{project}", body={"quota_set": {"volumes": 1}}
    )
    assert denied.status == 403
    url = f"{system.url}/v3/os-quota-sets/{project}"
    lower = await admin.request("PUT", "", url=url, body={"quota_set": {"gigabytes": 1}})
    assert lower.status == 400  # below what is already used
    unknown = await admin.request("PUT", "", url=url, body={"quota_set": {"instances": 5}})
    assert unknown.status == 400
    updated = await admin.request("PUT", "", url=url, body={"quota_set": {"volumes": 1}})
    assert (updated.status, updated.json["quota_set"]["volumes"]) == (200, 1)
    over = await owner.request("POST", "/volumes", body={"volume": {"size": 1}})
    assert over.status == 413
    assert (await admin.request("DELETE", "", url=url)).status == 200
    again = await owner.request("GET", f"/os-quota-sets/{project}")
    assert again.json["quota_set"]["volumes"] == 10
    defaults = await owner.request("GET", f"/os-quota-sets/{project}/defaults")
    assert defaults.json["quota_set"]["volumes"] == 10


async def test_quota_samples(system: System) -> None:
    require_samples()
    project = uuid.uuid4().hex
    url = f"{system.url}/v3/os-quota-sets/{project}"
    good = json.loads((SAMPLES / "quota_sets" / "quotas-update-request.json").read_text())
    assert (await system.client.request("PUT", "", url=url, body=good)).status == 200
    wrong = json.loads((SAMPLES / "user-quotas-update-request.json").read_text())
    assert (await system.client.request("PUT", "", url=url, body=wrong)).status == 400
    shown = await system.client.request("GET", "", url=url)
    expected = json.loads((SAMPLES / "quota_sets" / "quotas-show-response.json").read_text())
    assert set(expected["quota_set"]) <= set(shown.json["quota_set"])
