"""Authorization proven (issue 12 item 5): every route and every volume action of the action
table, asked by an admin (of another project: Cinder's admin is cloud-wide), a member and a
reader of the owning project, a member of another project (through its own project's URL,
the project-less URL of 3.67, and the owner's URL), no token (noauth and keystone mode), a
member's user token with Nova's service token beside it, and a service token alone.

What each case expects comes from the policy enforcer evaluating the rule that decides it
(for actions, the action table's row), not from a hand-copied list; the Cinder facts the
rules do not say are written down where they are used, with the spec section.

- another project's member: every request naming a resource of the owning project is 404
  ``itemNotFound`` (spec §1.7 "Project scoping and existence hiding"), and it never sees
  them in a listing;
- a refused request appends no event: none carries the caller's user id, and the owning
  project's volumes keep their versions;
- a caller the rule allows is not refused (no 401/403, no 404 hiding the resource, no 5xx);
  a domain refusal is still a Cinder fault;
- every refusal body is Cinder's fault ``{"<name>": {"code": N, "message": ...}}`` with the
  name of its status (spec §1.6), except keystonemiddleware's own 401 (ecosystem §1,
  "Cinder's fault body": ``{"error": {...}}`` plus ``WWW-Authenticate``).

The refused callers all ask about one set of resources (they must change nothing); the
callers that may change things get resources of their own per case, made up front,
concurrently.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from cinderblock.api.action_table import ACTION_TABLE
from cinderblock.api.middleware import PUBLIC_PATHS
from cinderblock.api.routes import setup_routes
from tests.e2e.conftest import System
from tests.helpers.api_process import api_serving, keystone_settings
from tests.helpers.apiref import SAMPLES
from tests.helpers.authz import (
    CALLERS,
    FAULT_NAMES,
    VERSION,
    Caller,
    Case,
    action_cases,
    policy_allows,
    route_cases,
)
from tests.helpers.client import Reply
from tests.helpers.fake_keystone import FakeKeystone, fake_keystone

if not SAMPLES.is_dir():  # the action bodies are Cinder's api-ref samples
    pytest.skip(
        "Cinder api-ref samples not found (set CINDERBLOCK_API_REF)", allow_module_level=True
    )
CASES = route_cases() + action_cases()
MATRIX = [(case, caller) for case in CASES for caller in CALLERS]

# Known authorization bugs the matrix found: (case name, caller kind) -> the bug.
# Cases the product answers wrongly, each with why (xfail, strict): none at present.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


@dataclass
class World:
    system: System
    keystone: FakeKeystone
    keystone_url: str
    session: aiohttp.ClientSession
    owner: str  # the project that owns the shared resources
    shared: dict[str, str]  # what the refused callers ask about
    # (case, caller kind) -> (the caller's project, the owner, the owner's resources)
    own: dict[tuple[str, str], tuple[str, str, dict[str, str]]]
    nova_token: str


@pytest_asyncio.fixture(scope="module")
async def world(system: System) -> AsyncIterator[World]:
    async with fake_keystone() as keystone, aiohttp.ClientSession() as session:
        keystone.users["cinder"] = ("s3cret", "service-project", ["service", "admin"])
        settings = keystone_settings(system.settings, keystone.url, "cinder", "s3cret")
        async with api_serving(settings) as url:
            owner = uuid.uuid4().hex
            every = frozenset().union(*(case.needs for case in CASES))
            shared = await _resources(system, owner, every, legacy_attach=False)
            limit = asyncio.Semaphore(24)

            async def own(case: Case, caller: Caller) -> tuple[str, str, dict[str, str]]:
                project = uuid.uuid4().hex  # the project id regex wants hex
                owner = uuid.uuid4().hex if caller.kind == "admin" else project
                async with limit:
                    values = await _resources(
                        system, owner, case.needs, legacy_attach=case.path.endswith("/action")
                    )
                return project, owner, values

            pairs = [(case, caller) for case, caller in MATRIX if caller.own]
            made = await asyncio.gather(*(own(case, caller) for case, caller in pairs))
            yield World(
                system,
                keystone,
                url,
                session,
                owner,
                shared,
                {
                    (case.name, caller.kind): m
                    for (case, caller), m in zip(pairs, made, strict=True)
                },
                keystone.issue("nova", "service-project", ["service"]),
            )


async def _resources(
    system: System, owner: str, needs: frozenset[str], *, legacy_attach: bool
) -> dict[str, str]:
    """The owning project's resources a case names: a volume with metadata ``k`` and image
    metadata, its snapshot (metadata ``k``), another volume, an image, an attachment (of
    the volume by os-attach for actions, else by the attachments API, of another volume
    when the volume must stay available), a public type with extra spec ``k`` and
    encryption. Made by the noauth default caller, an admin of the owner's project."""
    c = system.client.as_(project_id=owner, version=VERSION)  # noauth: admin of the owner
    values = {"owner": owner, "instance": str(uuid.uuid4()), "unique": uuid.uuid4().hex}

    async def volume() -> str:
        created = await c.create_volume(1)
        return str((await system.until_status(created["id"], "available"))["id"])

    async def ok(method: str, path: str, body: Any = None) -> Reply:
        reply = await c.request(method, path, body=body)
        assert reply.status in (200, 202), f"{method} {path}: {reply.status} {reply.text}"
        return reply

    if needs & {"volume", "snapshot", "attachment"}:
        vid = values["volume"] = await volume()
        await ok("POST", f"/volumes/{vid}/metadata", {"metadata": {"k": "v"}})
        image = {"os-set_image_metadata": {"metadata": {"ramdisk_id": "somedisk"}}}
        await ok("POST", f"/volumes/{vid}/action", image)
    if "other_volume" in needs:
        values["other_volume"] = await volume()
    if "snapshot" in needs:
        reply = await ok("POST", "/snapshots", {"snapshot": {"volume_id": values["volume"]}})
        sid = values["snapshot"] = reply.json["snapshot"]["id"]

        async def snapshot_ready() -> bool:
            shown = await c.request("GET", f"/snapshots/{sid}")
            return bool(shown.json["snapshot"]["status"] == "available")

        await system.projected.until(snapshot_ready)
        await ok("POST", f"/snapshots/{sid}/metadata", {"metadata": {"k": "v"}})
    if "attachment" in needs:
        if legacy_attach:
            attach = {"os-attach": {"instance_uuid": values["instance"], "mountpoint": "/dev/vdb"}}
            await ok("POST", f"/volumes/{values['volume']}/action", attach)
            shown = await c.volume(values["volume"])
            assert shown is not None
            values["attachment"] = shown["attachments"][0]["attachment_id"]
        else:
            target = await volume()
            body = {"attachment": {"volume_uuid": target, "instance_uuid": values["instance"]}}
            values["attachment"] = (await ok("POST", "/attachments", body)).json["attachment"]["id"]
            values["attached_volume"] = target
    if "image" in needs:
        source = await volume()
        upload = {"os-volume_upload_image": {"image_name": f"i-{uuid.uuid4().hex}"}}
        reply = await ok("POST", f"/volumes/{source}/action", upload)
        values["image"] = reply.json["os-volume_upload_image"]["image_id"]
        await system.until_status(source, "available")
    if "message" in needs:
        values["message"] = await _message(system, c)
    if needs & {"type", "encryption"}:
        body = {"volume_type": {"name": f"t-{uuid.uuid4().hex}", "extra_specs": {"k": "v"}}}
        tid = values["type"] = (await ok("POST", "/types", body)).json["volume_type"]["id"]
        enc = {
            "encryption": {
                "provider": "luks",
                "control_location": "front-end",
                "cipher": "aes-xts-plain64",
                "key_size": 256,
            }
        }
        reply = await ok("POST", f"/types/{tid}/encryption", enc)
        values["encryption"] = reply.json["encryption"]["encryption_id"]
    return values


async def _message(system: System, c: Any) -> str:
    """A user message of the owner's: a retype its volume's backend cannot take in place,
    refused (migration policy never) without any injected fault."""
    types = []
    for backend in ("file-a", "file-b"):
        spec = {"name": f"t-{uuid.uuid4().hex}", "extra_specs": {"volume_backend_name": backend}}
        reply = await c.request("POST", "/types", body={"volume_type": spec})
        assert reply.status == 200, reply.text
        types.append(reply.json["volume_type"]["name"])
    created = await c.create_volume(1, volume_type=types[0])
    vid = (await system.until_status(created["id"], "available"))["id"]
    reply = await c.action(vid, {"os-retype": {"new_type": types[1]}})
    assert reply.status == 202, reply.text

    async def recorded() -> str | None:
        listed = await c.request("GET", f"/messages?resource_uuid={vid}")
        return listed.json["messages"][0]["id"] if listed.json["messages"] else None

    message_id: str = await system.projected.until(recorded)
    return message_id


def _expected(case: Case, caller: Caller, user: str, project: str, owner: str) -> int | None:
    """The refusal this caller gets, or None when it may act."""
    if caller.roles is None:
        # Keystone mode: keystonemiddleware's 401 (ecosystem §1, C-11). noauth: Cinder's
        # Auth 1.1 handshake, 204 and nothing else done (spec §1.7 "noauth mode").
        return 401 if caller.keystone else 204
    if caller.url == "owner" and project != owner:
        # A token of one project, the URL of another: refused before anything is looked up
        # (ecosystem §2.5 leaves the choice to the server; this one answers 400, as
        # test_keystone_auth also pins).
        return 400
    if case.owned and caller.stranger:
        return 404  # spec §1.7: another project's resources are 404, never 403
    return None if policy_allows(case, caller, user, project, owner) else 403


def _id(pair: tuple[Case, Caller]) -> str:
    case, caller = pair
    return f"{case.name.replace(' ', '_')}-{caller.kind}"


def _params() -> list[Any]:
    out = []
    for case, caller in MATRIX:
        bug = KNOWN_BUGS.get((case.name, caller.kind))
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        out.append(pytest.param(case, caller, id=_id((case, caller)), marks=marks))
    return out


async def _versions(world: World, values: dict[str, str]) -> dict[str, int | None]:
    ids = [values[k] for k in ("volume", "other_volume", "attached_volume") if k in values]
    return {
        vid: await world.system.pool.fetchval(
            "SELECT max(originator_version) FROM events WHERE originator_id = $1",
            uuid.UUID(vid),
        )
        for vid in ids
    }


async def _send(
    world: World,
    caller: Caller,
    user: str,
    project: str,
    owner: str,
    case: Case,
    values: dict[str, str],
) -> Reply:
    """Raw HTTP with exactly the caller's headers (no default token)."""
    path, body = case.render(values)
    headers = {"OpenStack-API-Version": f"volume {VERSION}", "Accept": "application/json"}
    base = world.keystone_url if caller.keystone else world.system.url
    if caller.roles is not None and not caller.keystone:
        headers |= {"X-Auth-Token": f"{user}:{project}", "X-Roles": ",".join(sorted(caller.roles))}
    elif caller.roles is not None:
        headers["X-Auth-Token"] = world.keystone.issue(user, project, sorted(caller.roles))
    if caller.service_token:
        headers["X-Service-Token"] = world.nova_token
    prefix = {"own": f"/v3/{project}", "none": "/v3", "owner": f"/v3/{owner}"}[caller.url]
    url = f"{base}{prefix}{path}"
    async with world.session.request(case.method, url, json=body, headers=headers) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.text())


def _fault(reply: Reply) -> dict[str, Any]:
    """The Cinder fault of a refusal: one key, the status's name, with code and message."""
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply.text
    body = reply.json
    name = FAULT_NAMES.get(reply.status, "computeFault")
    assert isinstance(body, dict), reply.text
    assert list(body) == [name], reply.text
    inner = body[name]
    assert inner["code"] == reply.status, reply.text
    assert isinstance(inner["message"], str), reply.text
    assert inner["message"], reply.text
    return dict(inner)


@pytest.mark.parametrize(("case", "caller"), _params())
async def test_matrix(world: World, case: Case, caller: Caller) -> None:
    user = f"{caller.kind}-{uuid.uuid4().hex[:12]}"
    if caller.own:
        project, owner, values = world.own[(case.name, caller.kind)]
    else:
        project = uuid.uuid4().hex if caller.stranger else world.owner
        owner, values = world.owner, world.shared
    values = values | {"unique": uuid.uuid4().hex}
    expected = _expected(case, caller, user, project, owner)
    before = await _versions(world, values) if expected is not None else {}

    reply = await _send(world, caller, user, project, owner, case, values)
    where = f"{case.method} {case.render(values)[0]} as {caller.kind}: {reply.status} {reply.text}"

    if expected == 204:
        assert reply.status == 204, where
        assert reply.headers["X-Auth-Token"] == "admin:admin", where
        assert reply.text == "", where
    elif expected == 401:
        assert reply.status == 401, where
        assert reply.json["error"]["code"] == 401, where
        assert reply.headers["WWW-Authenticate"] == 'Keystone uri="https://keystone.example/v3"'
    elif expected == 403:
        assert reply.status == 403, where
        message = _fault(reply)["message"]
        if case.action is not None:
            assert message == f"Policy doesn't allow {case.rule} to be performed.", where
        else:
            assert message.startswith("Policy doesn't allow "), where
    elif expected in (400, 404):
        assert reply.status == expected, where
        _fault(reply)
    else:
        assert reply.status < 500, where
        assert reply.status not in (401, 403), where
        if reply.status >= 400:
            fault = _fault(reply)
            if reply.status == 404:  # the domain's 404 (a key, an image), not a hidden resource
                named = [values[k] for k in ("volume", "snapshot", "attachment") if k in values]
                assert not any(f"{v} could not be found" in fault["message"] for v in named), where
        if caller.stranger and case.listed:
            hidden = [world.shared[k] for k in ("volume", "snapshot", "attachment", "message")]
            assert not any(h in reply.text for h in hidden), where

    if expected is not None:
        wrote = await world.system.pool.fetchval(
            "SELECT count(*) FROM events WHERE meta->>'user_id' = $1", user
        )
        assert wrote == 0, f"{where}: a refused request appended {wrote} event(s)"
        assert await _versions(world, values) == before, where


async def test_the_log_records_who_asked(world: World) -> None:
    """The control for "a refused request appends no event": an allowed change appends
    events that carry the caller's user id, which is what the matrix looks for."""
    case = next(c for c in CASES if c.name == "PUT volume")
    member = next(c for c in CALLERS if c.kind == "member")
    project, _, values = world.own[(case.name, member.kind)]
    user = f"control-{uuid.uuid4().hex[:12]}"
    body = {"volume": {"description": "control"}}
    headers = {
        "X-Auth-Token": f"{user}:{project}",
        "X-Roles": "member",
        "OpenStack-API-Version": f"volume {VERSION}",
    }
    url = f"{world.system.url}/v3/{project}/volumes/{values['volume']}"
    async with world.session.put(url, json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    wrote = await world.system.pool.fetchval(
        "SELECT count(*) FROM events WHERE meta->>'user_id' = $1", user
    )
    assert wrote >= 1


def _pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "$")


def test_every_route_has_a_case() -> None:
    """Every route the API serves (besides discovery and health) is in the matrix, in both
    the project and the project-less URL forms (they share handlers; the matrix asks the
    project-less form as another project's member), and every row of the action table."""
    app = web.Application()
    setup_routes(app, r"[0-9a-f\-]+")
    sample = {
        name: "x"
        for name in ("volume", "snapshot", "attachment", "type", "encryption", "owner", "message")
    }
    asked = {(case.method, case.path.format(**sample)) for case in CASES}
    missing = []
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or canonical in PUBLIC_PATHS:
            continue
        tail = re.sub(r"^/v3(/\{project_id\})?", "", canonical)
        pattern = _pattern(tail)
        if not any(m == route.method and pattern.match(p) for m, p in asked):
            missing.append(f"{route.method} {canonical}")
    assert not missing, missing
    assert {c.action for c in CASES if c.action is not None} == set(ACTION_TABLE)
