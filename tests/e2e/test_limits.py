"""``GET /limits`` as Nova reads it (``get_absolute_limits``, issue 9): the project's quota
limits and, with ``limits_extension:used_limits``, its usage; no rate limits."""

from __future__ import annotations

import uuid

from tests.e2e.conftest import System
from tests.helpers.cinder import snapshot_of
from tests.helpers.client import CinderClient

USED = {
    "totalVolumesUsed",
    "totalGigabytesUsed",
    "totalSnapshotsUsed",
    "totalBackupsUsed",
    "totalBackupGigabytesUsed",
}


async def absolute(client: CinderClient, query: str = "") -> dict[str, int]:
    reply = await client.request("GET", f"/limits{query}")
    assert reply.status == 200, reply.text
    assert reply.json["limits"]["rate"] == []
    assert set(reply.json) == {"limits"}
    assert set(reply.json["limits"]) == {"rate", "absolute"}
    found: dict[str, int] = reply.json["limits"]["absolute"]
    return found


async def test_limits_show_quota_limits_and_usage(system: System) -> None:
    project = uuid.uuid4().hex
    client = system.client.as_(project_id=project)
    settings = system.settings
    assert await absolute(client) == {
        "maxTotalVolumes": settings.quota_volumes,
        "maxTotalVolumeGigabytes": settings.quota_gigabytes,
        "maxTotalSnapshots": settings.quota_snapshots,
        "maxTotalBackups": 10,
        "maxTotalBackupGigabytes": 1000,
        **dict.fromkeys(USED, 0),
    }

    small = await client.create_volume(1)
    large = await client.create_volume(2)
    for created in (small, large):
        await system.until_status(created["id"], "available")
    limits = await absolute(client)
    assert (limits["totalVolumesUsed"], limits["totalGigabytesUsed"]) == (2, 3)
    await snapshot_of(system, client, small["id"])
    limits = await absolute(client)
    assert (limits["totalVolumesUsed"], limits["totalSnapshotsUsed"]) == (2, 1)
    usage = (await client.request("GET", f"/os-quota-sets/{project}?usage=true")).json
    assert limits["totalGigabytesUsed"] == usage["quota_set"]["gigabytes"]["in_use"]

    set_quota = await system.client.request(
        "PUT",
        f"/os-quota-sets/{project}",
        body={"quota_set": {"volumes": 7, "snapshots": -1}},
    )
    assert set_quota.status == 200, set_quota.text
    limits = await absolute(client)
    assert (limits["maxTotalVolumes"], limits["maxTotalSnapshots"]) == (7, -1)

    # the URL without the project id answers the same
    projectless = await client.request("GET", "", url=f"{system.url}/v3/limits")
    assert projectless.status == 200, projectless.text
    assert projectless.json["limits"]["absolute"] == limits


async def test_used_limits_follow_the_policy_and_admins_pick_a_project(system: System) -> None:
    project = uuid.uuid4().hex
    owner = system.client.as_(project_id=project)
    await system.until_status((await owner.create_volume(2))["id"], "available")

    reader = owner.as_(roles="reader")
    assert (await absolute(reader))["totalGigabytesUsed"] == 2
    nobody = owner.as_(roles="no-such-role")  # not even a reader: the limits, no usage
    bare = await absolute(nobody)
    assert not USED & set(bare)
    assert bare["maxTotalVolumes"] == system.settings.quota_volumes

    admin = system.client.as_(project_id=uuid.uuid4().hex)  # another project, admin
    assert (await absolute(admin.as_(version="3.39"), f"?project_id={project}"))[
        "totalGigabytesUsed"
    ] == 2
    assert (await absolute(admin.as_(version="3.39"), f"?tenant_id={project}"))[
        "totalVolumesUsed"
    ] == 1
    # before 3.39, and for non-admins, the parameter is ignored: their own project
    assert (await absolute(admin.as_(version="3.38"), f"?project_id={project}"))[
        "totalVolumesUsed"
    ] == 0
    stranger = system.client.as_(project_id=uuid.uuid4().hex, roles="member", version="3.39")
    assert (await absolute(stranger, f"?project_id={project}"))["totalVolumesUsed"] == 0
