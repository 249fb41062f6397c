"""auth_strategy keystone against a real Keystone (tests/helpers/real_keystone.py: the
``keystone`` package in a subprocess, SQLite, fernet tokens, bootstrapped by
keystone-manage), not the fake of tests/e2e/test_keystone_auth.py.

One Keystone and one API (with a projector, on a database of its own) for the module. The
API validates callers' tokens with its own service user (``cinder``, role ``service`` in
project ``service``), as keystonemiddleware does; it caches a validation for
``keystone_token_cache_time`` (short here, 3 s), so a revocation is seen within that time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from cinderblock.config.settings import Settings
from cinderblock.projector.run import Projector
from cinderblock.runtime.infra import create_schemas
from tests.helpers.api_process import ApiClient as Api
from tests.helpers.api_process import api_serving, keystone_settings
from tests.helpers.real_keystone import RealKeystone, User, real_keystone
from tests.helpers.rigs import stop_tasks
from tests.helpers.servers import Servers, fresh_database

CACHE_TIME = 3.0  # the API's keystone_token_cache_time here
LIFETIME = 5.0  # seconds the expiring user token lives
WWW_AUTHENTICATE = 'Keystone uri="https://keystone.example/v3"'


@dataclass(frozen=True)
class Cast:
    """Who is in the real Keystone: two projects and their users, and two service users."""

    keystone: RealKeystone
    alice: User  # member + reader of alpha
    carol: User  # reader of alpha
    ops: User  # admin of alpha
    bob: User  # member + reader of beta
    cinder: User  # the API's own service user (service, in project service)
    nova: User  # a service calling on a user's behalf (service, in project service)


@pytest.fixture(scope="module")
def cast() -> Iterator[Cast]:
    with real_keystone() as keystone:
        service, alpha, beta = (keystone.project(n) for n in ("service", "alpha", "beta"))
        yield Cast(
            keystone,
            alice=keystone.user("alice", alpha, ["member", "reader"]),
            carol=keystone.user("carol", alpha, ["reader"]),
            ops=keystone.user("ops", alpha, ["admin", "member", "reader"]),
            bob=keystone.user("bob", beta, ["member", "reader"]),
            cinder=keystone.user("cinder", service, ["service"]),
            nova=keystone.user("nova", service, ["service"]),
        )


@pytest_asyncio.fixture(scope="module")
async def kapi(cast: Cast, servers: Servers, settings: Settings) -> AsyncIterator[Api]:
    async with fresh_database(servers) as database_url:
        own = keystone_settings(
            settings,
            cast.keystone.url,
            cast.cinder.name,
            cast.cinder.password,
            database_url=database_url,
            keystone_project_name="service",
            keystone_token_cache_time=CACHE_TIME,
            keystone_timeout=2.0,
        )
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
        try:
            await create_schemas(pool)
            stop = asyncio.Event()
            projector = asyncio.create_task(Projector(pool).follow(stop))
            try:
                async with api_serving(own) as url, aiohttp.ClientSession() as session:
                    yield Api(url, session)
            finally:
                stop.set()
                await stop_tasks([projector])
        finally:
            await pool.close()


async def token_of(cast: Cast, user: User) -> str:
    return await asyncio.to_thread(cast.keystone.token, user)


async def create_volume(kapi: Api, user: User, token: str) -> str:
    status, body, _ = await kapi.call(
        "POST",
        f"/v3/{user.project_id}/volumes",
        token,
        {"volume": {"size": 1, "name": f"rk-{uuid.uuid4().hex[:8]}"}},
    )
    assert status == 202, body
    return str(body["volume"]["id"])


async def test_a_members_token_acts_in_its_project(cast: Cast, kapi: Api) -> None:
    alice = cast.alice
    token = await token_of(cast, alice)
    # Identity headers a client sends are ignored: Keystone's word counts.
    spoof = {"X-Roles": "admin", "X-Project-Id": cast.bob.project_id, "X-User-Id": "root"}
    status, body, _ = await kapi.call(
        "POST",
        f"/v3/{alice.project_id}/volumes",
        token,
        {"volume": {"size": 1}},
        spoof,
    )
    assert status == 202, body
    vid = body["volume"]["id"]
    assert body["volume"]["user_id"] == alice.id
    status, body, _ = await kapi.call("GET", f"/v3/{alice.project_id}/volumes", token)
    assert status == 200, body
    assert vid in {v["id"] for v in body["volumes"]}
    # The volume is the token's project's: an admin of alpha sees its tenant attribute.
    admin = await token_of(cast, cast.ops)
    status, body, _ = await kapi.call("GET", f"/v3/{alice.project_id}/volumes/{vid}", admin)
    assert status == 200, body
    assert body["volume"]["os-vol-tenant-attr:tenant_id"] == alice.project_id
    # force delete is admin-only: the spoofed X-Roles gave alice nothing.
    status, body, _ = await kapi.call(
        "POST",
        f"/v3/{alice.project_id}/volumes/{vid}/action",
        token,
        {"os-force_delete": {}},
        spoof,
    )
    assert status == 403, body


async def test_a_readers_token_reads_and_cannot_create(cast: Cast, kapi: Api) -> None:
    carol = cast.carol
    token = await token_of(cast, carol)
    status, body, _ = await kapi.call("GET", f"/v3/{carol.project_id}/volumes", token)
    assert status == 200, body
    status, body, _ = await kapi.call(
        "POST", f"/v3/{carol.project_id}/volumes", token, {"volume": {"size": 1}}
    )
    assert status == 403, body


async def test_a_token_of_another_project_cannot_see_the_volume(cast: Cast, kapi: Api) -> None:
    vid = await create_volume(kapi, cast.alice, await token_of(cast, cast.alice))
    bob = cast.bob
    token = await token_of(cast, bob)
    status, body, _ = await kapi.call("GET", f"/v3/{bob.project_id}/volumes/{vid}", token)
    assert status == 404, body
    status, body, _ = await kapi.call("GET", f"/v3/{bob.project_id}/volumes", token)
    assert status == 200, body
    assert vid not in {v["id"] for v in body["volumes"]}
    # alpha's URL with beta's token: the project in the URL is not the token's.
    status, body, _ = await kapi.call("GET", f"/v3/{cast.alice.project_id}/volumes/{vid}", token)
    assert status == 400, body


async def test_a_revoked_token_is_401_within_the_cache_time(cast: Cast, kapi: Api) -> None:
    alice = cast.alice
    path = f"/v3/{alice.project_id}/volumes"
    # Revoked before the API ever saw it: refused at once.
    never_used = await token_of(cast, alice)
    await asyncio.to_thread(cast.keystone.revoke, never_used)
    status, body, headers = await kapi.call("GET", path, never_used)
    assert status == 401, body
    assert body["error"]["title"] == "Unauthorized"
    assert headers["WWW-Authenticate"] == WWW_AUTHENTICATE
    # Revoked after the API validated it: the cached validation holds for at most
    # keystone_token_cache_time (as keystonemiddleware's token_cache_time), then 401.
    used = await token_of(cast, alice)
    status, _, _ = await kapi.call("GET", path, used)
    assert status == 200
    await asyncio.to_thread(cast.keystone.revoke, used)
    assert await asyncio.to_thread(cast.keystone.validate, used) == 404
    deadline = time.monotonic() + CACHE_TIME + 10
    while True:
        status, body, headers = await kapi.call("GET", path, used)
        if status != 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert status == 401, body
    assert headers["WWW-Authenticate"] == WWW_AUTHENTICATE


async def test_an_expired_token_is_accepted_with_a_service_token(cast: Cast, kapi: Api) -> None:
    alice = cast.alice
    path = f"/v3/{alice.project_id}/volumes"
    expiring, _ = await asyncio.to_thread(cast.keystone.short_lived_token, alice, LIFETIME)
    status, body, _ = await kapi.call("GET", path, expiring)
    assert status == 200, body
    # Wait for Keystone itself to call it expired (a wall-clock expiry; no event to wait on).
    deadline = time.monotonic() + 30
    while await asyncio.to_thread(cast.keystone.validate, expiring) != 404:
        assert time.monotonic() < deadline, "the token never expired"
        await asyncio.sleep(0.2)
    status, body, headers = await kapi.call("GET", path, expiring)
    assert status == 401, body
    assert headers["WWW-Authenticate"] == WWW_AUTHENTICATE
    # Nova's long operations: a valid service token vouches for the expired user token.
    nova = await token_of(cast, cast.nova)
    status, body, _ = await kapi.call("GET", path, expiring, headers={"X-Service-Token": nova})
    assert status == 200, body
    vid = await create_volume(kapi, alice, await token_of(cast, alice))
    status, body, _ = await kapi.call(
        "GET", f"{path}/{vid}", expiring, headers={"X-Service-Token": nova}
    )
    assert status == 200, body
    assert body["volume"]["user_id"] == alice.id
    # A service token without the service role vouches for nothing.
    plain = await token_of(cast, cast.bob)
    status, body, _ = await kapi.call("GET", path, expiring, headers={"X-Service-Token": plain})
    assert status == 401, body


async def test_keystone_down_is_503_and_recovers(cast: Cast, kapi: Api) -> None:
    alice = cast.alice
    path = f"/v3/{alice.project_id}/volumes"
    token = await token_of(cast, alice)  # issued, never validated by the API: not cached
    await asyncio.to_thread(cast.keystone.stop)
    try:
        status, body, headers = await kapi.call("GET", path, token)
        assert status == 503, body
        assert body["error"]["code"] == 503
        assert "Keystone" in body["error"]["message"]
        assert headers["x-openstack-request-id"].startswith("req-")
    finally:
        await asyncio.to_thread(cast.keystone.start)
    # Same database and keys: the token issued before the outage is good again.
    status, body, _ = await kapi.call("GET", path, token)
    assert status == 200, body
