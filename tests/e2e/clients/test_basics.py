"""Unmodified python-cinderclient and openstacksdk against the running service (how they
are pointed at it: support.py). Each one negotiates its microversion from our
version document, drives the volume lifecycle with its own calls (create, show, list by
name, extend, set bootable, delete) and sees our faults as its own exceptions. The other
actions and resources, client by client: test_cinder_actions.py and
test_sdk_actions.py.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from cinderclient import api_versions
from cinderclient import client as cinder_client
from cinderclient import exceptions as cinder_exc
from cinderclient import utils as cinder_utils
from openstack import exceptions as sdk_exc
from openstack import utils as sdk_utils

from tests.e2e.clients.support import (
    SDK_WARNINGS,
    SERVER_MAX,
    Cinder,
    Sdk,
    server_view,
    until,
)
from tests.e2e.clients.support import cinder_status as _cinder_status
from tests.e2e.clients.support import sdk_status as _sdk_status
from tests.e2e.conftest import System

pytestmark = SDK_WARNINGS

EXTEND_SMALLER = "New size for extend must be greater than current size"
QUOTA_EXCEEDED = "Requested volume or snapshot exceeds allowed gigabytes quota."


async def test_cinderclient_negotiates_microversions_from_our_version_document(
    system: System, cinder: Cinder
) -> None:
    c = cinder.client
    assert await asyncio.to_thread(c.client.get_endpoint) == cinder.endpoint

    # What the cinder CLI does before every command.
    discovered = await asyncio.to_thread(
        api_versions.discover_version, c, api_versions.APIVersion(SERVER_MAX)
    )
    assert discovered == api_versions.APIVersion(SERVER_MAX)
    downgraded = await asyncio.to_thread(
        api_versions.discover_version, c, api_versions.APIVersion("3.99")
    )
    assert downgraded == api_versions.APIVersion(SERVER_MAX)
    highest = await asyncio.to_thread(api_versions.get_highest_version, c)
    assert highest == api_versions.APIVersion(SERVER_MAX)
    versions = await asyncio.to_thread(c.services.server_api_version)
    assert [(v.id, v.min_version, v.version) for v in versions] == [("v3.0", "3.0", SERVER_MAX)]

    # What Nova does (``nova/volume/cinder.py``): a bare requests GET of the root.
    nova_style = await asyncio.to_thread(
        cinder_client.get_highest_client_server_version, cinder.endpoint
    )
    assert nova_style == SERVER_MAX

    # The negotiated version is sent and echoed; a 3.0 client sends nothing and gets 3.0.
    resp, body = await asyncio.to_thread(c.client.get, "/volumes")
    assert resp.request.headers["OpenStack-API-Version"] == f"volume {SERVER_MAX}"
    assert resp.headers["OpenStack-API-Version"] == f"volume {SERVER_MAX}"
    assert body == {"volumes": []}
    plain = cinder_client.Client("3.0", session=cinder.session)
    resp, _ = await asyncio.to_thread(plain.client.get, "/volumes")
    assert resp.request.headers.get("OpenStack-API-Version") is None
    assert resp.headers["OpenStack-API-Version"] == "volume 3.0"


async def test_cinderclient_volume_lifecycle(system: System, cinder: Cinder) -> None:
    c = cinder.client
    name = f"cc-{uuid.uuid4().hex[:8]}"
    created = await asyncio.to_thread(c.volumes.create, 1, name=name, description="by cinder")
    assert created.status == "creating"
    assert created.name == name

    volume = await until(lambda: c.volumes.get(created.id), lambda v: v.status == "available")
    assert (volume.size, volume.name, volume.description) == (1, name, "by cinder")
    assert volume.bootable == "false"
    assert getattr(volume, "os-vol-tenant-attr:tenant_id") == cinder.project_id

    detailed = await asyncio.to_thread(c.volumes.list, search_opts={"name": name})
    assert [(v.id, v.status, v.size) for v in detailed] == [(created.id, "available", 1)]
    summary = await asyncio.to_thread(c.volumes.list, detailed=False, search_opts={"name": name})
    assert [(v.id, v.name) for v in summary] == [(created.id, name)]
    # How the cinder CLI resolves ``cinder extend <name> 2`` (all_tenants=1&name=…).
    found = await asyncio.to_thread(cinder_utils.find_resource, c.volumes, name)
    assert found.id == created.id

    resp, body = await asyncio.to_thread(c.volumes.extend, volume, 2)
    assert (resp.status_code, body) == (202, None)
    volume = await until(
        lambda: c.volumes.get(created.id), lambda v: (v.status, v.size) == ("available", 2)
    )
    resp, body = await asyncio.to_thread(c.volumes.set_bootable, volume, True)
    assert (resp.status_code, body) == (200, None)
    volume = await asyncio.to_thread(c.volumes.get, created.id)
    assert (volume.status, volume.size, volume.bootable) == ("available", 2, "true")
    stored = await server_view(system, created.id)
    assert (stored["size"], stored["bootable"]) == (2, "true")

    resp, body = await asyncio.to_thread(c.volumes.delete, volume)
    assert (resp.status_code, body) == (202, None)
    await until(lambda: _cinder_status(c, created.id), lambda s: s == "gone")
    with pytest.raises(cinder_exc.NotFound) as gone:
        await asyncio.to_thread(c.volumes.get, created.id)
    assert gone.value.code == 404
    assert f"Volume {created.id} could not be found." in str(gone.value)
    remaining = await asyncio.to_thread(c.volumes.list, search_opts={"name": name})
    assert list(remaining) == []


async def test_cinderclient_sees_our_faults_as_its_exceptions(
    system: System, cinder: Cinder
) -> None:
    c = cinder.client
    created = await asyncio.to_thread(c.volumes.create, 2, name="cc-faults")
    volume = await until(lambda: c.volumes.get(created.id), lambda v: v.status == "available")

    with pytest.raises(cinder_exc.BadRequest) as smaller:
        await asyncio.to_thread(c.volumes.extend, volume, 1)
    assert smaller.value.code == 400
    assert EXTEND_SMALLER in smaller.value.message
    assert smaller.value.message == (
        "Invalid input received: New size for extend must be greater than current size."
        " (current: 2, extended: 1)."
    )
    assert (smaller.value.request_id or "").startswith("req-")

    missing = str(uuid.uuid4())
    with pytest.raises(cinder_exc.NotFound) as not_found:
        await asyncio.to_thread(c.volumes.extend, missing, 3)
    assert not_found.value.message == f"Volume {missing} could not be found."

    with pytest.raises(cinder_exc.OverLimit) as over:
        await asyncio.to_thread(c.volumes.create, 1001)
    assert over.value.code == 413
    assert QUOTA_EXCEEDED in over.value.message

    unchanged = await asyncio.to_thread(c.volumes.get, created.id)
    assert (unchanged.status, unchanged.size) == ("available", 2)
    await asyncio.to_thread(c.volumes.delete, unchanged)
    await until(lambda: _cinder_status(c, created.id), lambda s: s == "gone")


# cinderclient's SORT_KEY_MAPPINGS turns sort key ``name`` into ``display_name``; Cinder
# translates ``name`` itself but also takes ``display_name`` (its DB column), and so do we.
@pytest.mark.parametrize("cinder", ["project-in-url"], indirect=True)
async def test_cinderclient_sorts_volumes_by_name(system: System, cinder: Cinder) -> None:
    c = cinder.client
    for name in ("b-sorted", "a-sorted", "c-sorted"):
        await asyncio.to_thread(c.volumes.create, 1, name=name)
    ordered = await asyncio.to_thread(c.volumes.list, sort="name:asc")
    assert [v.name for v in ordered] == ["a-sorted", "b-sorted", "c-sorted"]


# ``cinder list --tenant P`` sends all_tenants=1&project_id=P. Cinder checks list filters
# only for non-admins (cinder/api/common.py reject_invalid_filters returns early for an
# admin) and filters the project_id column.
@pytest.mark.parametrize("cinder", ["project-in-url"], indirect=True)
async def test_cinderclient_admin_lists_one_projects_volumes(
    system: System, cinder: Cinder
) -> None:
    theirs = await system.available_volume(1)
    await system.available_volume(1)  # in yet another project
    project = theirs["os-vol-tenant-attr:tenant_id"]
    listed = await asyncio.to_thread(
        cinder.client.volumes.list, search_opts={"all_tenants": 1, "project_id": project}
    )
    assert [v.id for v in listed] == [theirs["id"]]


async def test_sdk_negotiates_microversions_from_our_version_document(
    system: System, sdk: Sdk
) -> None:
    data = await asyncio.to_thread(sdk.bs.get_endpoint_data)
    assert data.url.startswith(f"{system.url}/v3")
    assert (data.min_microversion, data.max_microversion) == ((3, 0), (3, 71))
    assert data.api_version == (3, 0)
    best = await asyncio.to_thread(sdk_utils.maximum_supported_microversion, sdk.bs, "3.99")
    assert best == SERVER_MAX
    assert await asyncio.to_thread(sdk_utils.supports_microversion, sdk.bs, "3.42")
    assert not await asyncio.to_thread(sdk_utils.supports_microversion, sdk.bs, "3.72")
    # Resource calls run at min(Volume._max_microversion 3.71, server max): the negotiated
    # version goes out in keystoneauth's header and comes back echoed.
    resp = await asyncio.to_thread(sdk.bs.get, "/volumes", microversion=best)
    assert resp.status_code == 200
    assert resp.request.headers["OpenStack-API-Version"] == f"volume {SERVER_MAX}"
    assert resp.headers["OpenStack-API-Version"] == f"volume {SERVER_MAX}"


async def test_sdk_volume_lifecycle(system: System, sdk: Sdk) -> None:
    bs = sdk.bs
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    created = await asyncio.to_thread(bs.create_volume, size=1, name=name, description="by sdk")
    assert created.status == "creating"

    volume = await until(lambda: bs.get_volume(created.id), lambda v: v.status == "available")
    assert (volume.size, volume.name, volume.description) == (1, name, "by sdk")
    assert volume.is_bootable is False
    assert volume.project_id == sdk.project_id

    detailed = await asyncio.to_thread(lambda: list(bs.volumes(details=True, name=name)))
    assert [(v.id, v.status, v.size) for v in detailed] == [(created.id, "available", 1)]
    summary = await asyncio.to_thread(lambda: list(bs.volumes(details=False, name=name)))
    assert [(v.id, v.name) for v in summary] == [(created.id, name)]
    found = await asyncio.to_thread(bs.find_volume, name, ignore_missing=False)
    assert found.id == created.id

    assert await asyncio.to_thread(bs.extend_volume, volume, 2) is None
    volume = await until(
        lambda: bs.get_volume(created.id), lambda v: (v.status, v.size) == ("available", 2)
    )
    assert await asyncio.to_thread(bs.set_volume_bootable_status, volume, True) is None
    volume = await asyncio.to_thread(bs.get_volume, created.id)
    assert (volume.status, volume.size, volume.is_bootable) == ("available", 2, True)
    stored = await server_view(system, created.id)
    assert (stored["size"], stored["bootable"]) == (2, "true")

    await asyncio.to_thread(bs.delete_volume, volume, ignore_missing=False)
    await until(lambda: _sdk_status(bs, created.id), lambda s: s == "gone")
    with pytest.raises(sdk_exc.NotFoundException) as gone:
        await asyncio.to_thread(bs.get_volume, created.id)
    assert gone.value.status_code == 404
    assert f"Volume {created.id} could not be found." in str(gone.value)
    remaining = await asyncio.to_thread(lambda: list(bs.volumes(name=name)))
    assert remaining == []


async def test_sdk_sees_our_faults_as_its_exceptions(system: System, sdk: Sdk) -> None:
    bs = sdk.bs
    created = await asyncio.to_thread(bs.create_volume, size=2, name="sdk-faults")
    volume = await until(lambda: bs.get_volume(created.id), lambda v: v.status == "available")

    with pytest.raises(sdk_exc.BadRequestException) as smaller:
        await asyncio.to_thread(bs.extend_volume, volume, 1)
    assert smaller.value.status_code == 400
    assert smaller.value.details == (
        "Invalid input received: New size for extend must be greater than current size."
        " (current: 2, extended: 1)."
    )
    assert EXTEND_SMALLER in str(smaller.value)
    assert (smaller.value.request_id or "").startswith("req-")

    missing = str(uuid.uuid4())
    with pytest.raises(sdk_exc.NotFoundException) as not_found:
        await asyncio.to_thread(bs.get_volume, missing)
    assert not_found.value.details == f"Volume {missing} could not be found."

    with pytest.raises(sdk_exc.HttpException) as over:
        await asyncio.to_thread(bs.create_volume, size=1001)
    assert over.value.status_code == 413
    assert QUOTA_EXCEEDED in str(over.value.details)

    unchanged = await asyncio.to_thread(bs.get_volume, created.id)
    assert (unchanged.status, unchanged.size) == ("available", 2)
    await asyncio.to_thread(bs.delete_volume, unchanged)
    await until(lambda: _sdk_status(bs, created.id), lambda s: s == "gone")


# ``openstack volume list --project P`` sends all_tenants=True&project_id=P (see the
# cinderclient twin above).
@pytest.mark.parametrize("sdk", ["none-projectless"], indirect=True)
async def test_sdk_admin_lists_one_projects_volumes(system: System, sdk: Sdk) -> None:
    theirs = await system.available_volume(1)
    await system.available_volume(1)  # in yet another project
    project = theirs["os-vol-tenant-attr:tenant_id"]
    listed = await asyncio.to_thread(
        lambda: list(sdk.bs.volumes(all_projects=True, project_id=project))
    )
    assert [v.id for v in listed] == [theirs["id"]]


@pytest.mark.parametrize("cinder", ["project-in-url"], indirect=True)
async def test_cinderclient_drives_the_bookkeeping_and_admin_actions(
    system: System, cinder: Cinder
) -> None:
    """python-cinderclient's own calls for the attach bookkeeping, read-only flag, reset
    state, image metadata, connection and admin actions, read back through the client."""
    c = cinder.client
    created = await asyncio.to_thread(c.volumes.create, 1, name=f"cc-{uuid.uuid4().hex[:8]}")
    volume = await until(lambda: c.volumes.get(created.id), lambda v: v.status == "available")
    await asyncio.to_thread(c.volumes.reserve, volume)
    await until(lambda: c.volumes.get(created.id), lambda v: v.status == "attaching")
    await asyncio.to_thread(c.volumes.unreserve, volume)
    await until(lambda: c.volumes.get(created.id), lambda v: v.status == "available")

    server = str(uuid.uuid4())
    await asyncio.to_thread(c.volumes.attach, volume, server, "/dev/vdb", mode="rw")
    volume = await until(lambda: c.volumes.get(created.id), lambda v: v.status == "in-use")
    assert volume.attachments[0]["server_id"] == server
    await asyncio.to_thread(c.volumes.begin_detaching, volume)
    await until(lambda: c.volumes.get(created.id), lambda v: v.status == "detaching")
    await asyncio.to_thread(c.volumes.roll_detaching, volume)
    await until(lambda: c.volumes.get(created.id), lambda v: v.status == "in-use")
    await asyncio.to_thread(c.volumes.detach, volume, volume.attachments[0]["attachment_id"])
    volume = await until(lambda: c.volumes.get(created.id), lambda v: v.status == "available")

    await asyncio.to_thread(c.volumes.update_readonly_flag, volume, True)
    volume = await until(
        lambda: c.volumes.get(created.id), lambda v: v.metadata.get("readonly") == "True"
    )
    connector = {"host": "node-1", "initiator": "iqn.x"}
    info = await asyncio.to_thread(c.volumes.initialize_connection, volume, connector)
    assert info["driver_volume_type"] == "local"
    assert info["data"]["access_mode"] == "ro"
    await asyncio.to_thread(c.volumes.terminate_connection, volume, connector)

    await asyncio.to_thread(c.volumes.set_image_metadata, volume, {"os_distro": "fedora"})
    shown = await asyncio.to_thread(c.volumes.show_image_metadata, volume)
    assert shown[1]["metadata"] == {"os_distro": "fedora"}
    await asyncio.to_thread(c.volumes.delete_image_metadata, volume, ["os_distro"])

    await asyncio.to_thread(c.volumes.reset_state, volume, "error")
    await until(lambda: c.volumes.get(created.id), lambda v: v.status == "error")
    await asyncio.to_thread(c.volumes.force_delete, volume)
    await until(lambda: _cinder_status(c, created.id), lambda s: s == "gone")
