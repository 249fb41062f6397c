"""Unmodified python-cinderclient and openstacksdk pointed at the running service, for the
client tests in this package.

Both clients are pointed at the service without Keystone, the way ecosystem.md §1-2 says
operators do it: cinderclient with its ``noauth`` keystoneauth plugin (``user:project``
token), the SDK with keystoneauth's ``none`` plugin (token ``notused``, project-less URLs)
or a static ``admin_token`` (project in the URL).

The clients are synchronous and the server runs on the test's event loop, so every client
call goes through ``asyncio.to_thread``. The fixtures ``cinder`` and ``sdk`` are in this
package's conftest.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import openstack
import openstack.connection
import pytest
from cinderclient import client as cinder_client
from cinderclient import exceptions as cinder_exc
from cinderclient.contrib.noauth import CinderNoAuthLoader
from keystoneauth1 import loading
from keystoneauth1 import session as ks_session
from openstack import exceptions as sdk_exc

from tests.e2e.conftest import System

# openstacksdk 4.x warns from its own code paths on every connection and every request
# (not from anything these tests pass it): an all-None influxdb config is truthy, every
# resource calls its own deprecated ``_compute_attributes``, and the proxy passes the
# deprecated ``service_type`` argument to itself. Ignore exactly those three.
SDK_WARNINGS = [
    pytest.mark.filterwarnings(
        "ignore:Support for InfluxDB requires the influxdb library"
        ":openstack.warnings.RemovedInSDK60Warning"
    ),
    pytest.mark.filterwarnings(
        "ignore:The _compute_attributes method is deprecated for removal"
        ":openstack.warnings.RemovedInSDK50Warning"
    ),
    pytest.mark.filterwarnings(
        "ignore:The 'service_type' parameter is unnecesary:openstack.warnings.RemovedInSDK50Warning"
    ),
]

SERVER_MAX = "3.71"
T = TypeVar("T")


async def until(fetch: Callable[[], T], done: Callable[[T], bool], *, timeout: float = 15.0) -> T:
    """Call the synchronous ``fetch`` (in a thread) until ``done`` holds for its result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await asyncio.to_thread(fetch)
        if done(value):
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"not reached in {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.05)


async def server_view(system: System, volume_id: str) -> dict[str, Any]:
    """The volume as our own raw client sees it (project-less URL, admin)."""
    reply = await system.client.request("GET", "", url=f"{system.url}/v3/volumes/{volume_id}")
    assert reply.status == 200, reply.text
    volume: dict[str, Any] = reply.json["volume"]
    return volume


# --- python-cinderclient ------------------------------------------------------------------


@dataclass
class Cinder:
    client: Any  # cinderclient.v3.client.Client
    project_id: str
    session: ks_session.Session
    endpoint: str  # where its requests go


def cinder_session(system: System, project_id: str) -> ks_session.Session:
    """What ``cinder --os-auth-type noauth --os-user-id … --os-project-id …
    --os-endpoint {url}/v3`` builds: the plugin appends the project to the endpoint."""
    loader: Any = loading.get_plugin_loader("noauth")
    assert isinstance(loader, CinderNoAuthLoader)  # cinderclient's entry point, not another
    auth = loader.load_from_options(
        user_id="cc-user", project_id=project_id, endpoint=f"{system.url}/v3"
    )
    return ks_session.Session(auth=auth)


def cinder_at(cinder: Cinder, version: str) -> Any:
    """Another cinderclient on the same session, sending ``version`` (what ``cinder
    --os-volume-api-version 3.x`` does): the wrapped methods of that version are used."""
    return cinder_client.Client(version, session=cinder.session)


def cinder_status(c: Any, volume_id: str) -> str:
    try:
        status: str = c.volumes.get(volume_id).status
    except cinder_exc.NotFound:
        return "gone"
    return status


# --- openstacksdk -------------------------------------------------------------------------


@dataclass
class Sdk:
    conn: openstack.connection.Connection
    bs: Any  # openstack.block_storage.v3._proxy.Proxy
    project_id: str  # the project the service sees for this caller


def sdk_status(bs: Any, volume_id: str) -> str:
    try:
        status: str = bs.get_volume(volume_id).status
    except sdk_exc.NotFoundException:
        return "gone"
    return status
