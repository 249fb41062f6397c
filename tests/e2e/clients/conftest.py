"""The ``cinder`` and ``sdk`` fixtures: an unmodified client per test, each way of pointing
it at the service one parameter (see support.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import openstack
import pytest
import pytest_asyncio
from cinderclient import client as cinder_client

from tests.e2e.clients.support import SERVER_MAX, Cinder, Sdk, cinder_session
from tests.e2e.conftest import System


@pytest.fixture(params=["project-in-url", "projectless"])
def cinder(system: System, request: pytest.FixtureRequest) -> Iterator[Cinder]:
    project_id = uuid.uuid4().hex
    session = cinder_session(system, project_id)
    # ``os_endpoint`` becomes keystoneauth's endpoint_override: the URL is used verbatim.
    if request.param == "projectless":
        endpoint = f"{system.url}/v3"
        client = cinder_client.Client(SERVER_MAX, session=session, os_endpoint=endpoint)
    else:
        endpoint = f"{system.url}/v3/{project_id}"
        client = cinder_client.Client(SERVER_MAX, session=session)
    try:
        yield Cinder(client, project_id, session, endpoint)
    finally:
        session.close()


@pytest_asyncio.fixture(params=["none-projectless", "admin_token-project-in-url"])
async def sdk(system: System, request: pytest.FixtureRequest) -> AsyncIterator[Sdk]:
    if request.param == "none-projectless":
        # keystoneauth's ``none`` plugin sends ``X-Auth-Token: notused``: noauth reads that
        # as user and project ``notused``, which only a project-less URL can serve.
        conn = openstack.connect(
            auth_type="none",
            block_storage_endpoint_override=f"{system.url}/v3",
            load_yaml_config=False,
            load_envvars=False,
        )
        project_id = "notused"
    else:
        project_id = uuid.uuid4().hex
        conn = openstack.connect(
            auth_type="admin_token",
            auth={"token": f"sdk-user:{project_id}", "endpoint": f"{system.url}/v3/{project_id}"},
            load_yaml_config=False,
            load_envvars=False,
        )
    try:
        # The proxy is built on first use, and building it runs version discovery.
        bs = await asyncio.to_thread(lambda: conn.block_storage)
        yield Sdk(conn, bs, project_id)
    finally:
        conn.close()
