"""auth_strategy keystone: tokens validated against a Keystone-shaped server, as
keystonemiddleware does (ecosystem §7). A second API process on the e2e system's database
and stream runs in keystone mode; the e2e system's sagas do the storage work."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import pytest
import pytest_asyncio

from cinderblock.api import app as api
from cinderblock.config.settings import SettingsError
from tests.e2e.conftest import System
from tests.helpers.api_process import ApiClient, api_serving, keystone_settings
from tests.helpers.fake_keystone import FakeKeystone, fake_keystone


@dataclass
class KeystoneApi(ApiClient):
    keystone: FakeKeystone


@pytest_asyncio.fixture(scope="module")
async def kapi(system: System) -> AsyncIterator[KeystoneApi]:
    async with fake_keystone() as keystone, aiohttp.ClientSession() as session:
        keystone.users["cinder"] = ("s3cret", "service-project", ["service", "admin"])
        settings = keystone_settings(system.settings, keystone.url, "cinder", "s3cret")
        async with api_serving(settings) as url:
            yield KeystoneApi(url, session, keystone)


def project() -> str:
    return uuid.uuid4().hex


async def test_no_token_is_401_with_where_to_authenticate(kapi: KeystoneApi) -> None:
    status, body, headers = await kapi.call("GET", f"/v3/{project()}/volumes", None)
    assert status == 401
    assert body["error"]["code"] == 401
    assert body["error"]["title"] == "Unauthorized"
    assert headers["WWW-Authenticate"] == 'Keystone uri="https://keystone.example/v3"'
    assert headers["x-openstack-request-id"].startswith("req-")


async def test_unknown_token_is_401_and_a_noauth_token_means_nothing(kapi: KeystoneApi) -> None:
    p = project()
    for token in ("not-a-token", f"admin:{p}"):
        status, _, _ = await kapi.call("GET", f"/v3/{p}/volumes", token)
        assert status == 401, token


async def test_discovery_and_health_need_no_token(kapi: KeystoneApi) -> None:
    for path in ("/", "/v3/", "/healthcheck"):
        status, _, _ = await kapi.call("GET", path, None)
        assert status in (200, 300), path


async def test_member_token_acts_in_its_project_and_cannot_claim_admin(
    kapi: KeystoneApi, system: System
) -> None:
    p = project()
    token = kapi.keystone.issue("alice", p, ["member", "reader"])
    spoof = {"X-Roles": "admin", "X-Project-Id": project(), "X-User-Id": "root"}
    status, body, _ = await kapi.call(
        "POST", f"/v3/{p}/volumes", token, {"volume": {"size": 1}}, spoof
    )
    assert status == 202, body
    vid = body["volume"]["id"]
    assert body["volume"]["user_id"] == "alice"
    await system.until_status(vid, "available")
    # X-Roles from the client is ignored: force delete stays admin-only.
    status, body, _ = await kapi.call(
        "POST", f"/v3/{p}/volumes/{vid}/action", token, {"os-force_delete": {}}, spoof
    )
    assert status == 403, body
    # Another project's URL is refused, as in noauth.
    status, _, _ = await kapi.call("GET", f"/v3/{project()}/volumes/{vid}", token)
    assert status == 400
    # An admin token of the same project may.
    admin = kapi.keystone.issue("ops", p, ["admin", "member", "reader"])
    status, body, _ = await kapi.call(
        "POST", f"/v3/{p}/volumes/{vid}/action", admin, {"os-force_delete": {}}
    )
    assert status == 202, body
    await system.until_volume(vid, lambda v: v is None)


async def test_validations_are_cached_per_token(kapi: KeystoneApi) -> None:
    p = project()
    token = kapi.keystone.issue("bob", p, ["reader"])
    for _ in range(3):
        status, _, _ = await kapi.call("GET", f"/v3/{p}/volumes", token)
        assert status == 200
    assert kapi.keystone.validations.count(token) == 1


async def test_expired_token_is_401_unless_a_service_token_vouches(kapi: KeystoneApi) -> None:
    p = project()
    expired = kapi.keystone.issue("carol", p, ["member"], lifetime=timedelta(seconds=-5))
    status, _, _ = await kapi.call("GET", f"/v3/{p}/volumes", expired)
    assert status == 401
    nova = kapi.keystone.issue("nova", "service-project", ["service"])
    status, _, _ = await kapi.call(
        "GET", f"/v3/{p}/volumes", expired, headers={"X-Service-Token": nova}
    )
    assert status == 200
    # A service token without a service role vouches for nothing.
    plain = kapi.keystone.issue("mallory", "service-project", ["member"])
    status, _, _ = await kapi.call(
        "GET", f"/v3/{p}/volumes", expired, headers={"X-Service-Token": plain}
    )
    assert status == 401


async def test_system_scoped_token_is_403(kapi: KeystoneApi) -> None:
    token = kapi.keystone.issue("sysadmin", None, ["admin"])
    status, body, _ = await kapi.call("GET", "/v3/volumes", token)
    assert status == 403, body


async def test_keystone_down_is_503_and_recovers(kapi: KeystoneApi) -> None:
    p = project()
    token = kapi.keystone.issue("dave", p, ["reader"])
    kapi.keystone.down = True
    try:
        status, body, _ = await kapi.call("GET", f"/v3/{p}/volumes", token)
    finally:
        kapi.keystone.down = False
    assert status == 503, body
    status, _, _ = await kapi.call("GET", f"/v3/{p}/volumes", token)
    assert status == 200


def test_keystone_mode_refuses_to_start_without_credentials(system: System) -> None:
    settings = system.settings.model_copy(update={"auth_strategy": "keystone"})
    with pytest.raises(SettingsError, match="CINDERBLOCK_KEYSTONE_AUTH_URL"):
        api.create_app(settings)
