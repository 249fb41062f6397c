"""The mixed load: N clients in ONE project, each taking its volumes through a life that
touches every saga the issue names, one volume at a time:

create (1 GiB, type A) → extend to 2 → attach (attachments API: reserve, connect with a
connector: the export saga, os-complete) → extend to 3 while in use (the notifier tells
Nova) → detach (delete the attachment: the unexport saga) → retype to type B → migrate
(admin) to the other backend → delete.

Every answer is recorded (kind, status, request id, volume). After a 2xx the client waits
(bounded) until the volume shows the step's outcome; after anything else, or a step that
ends in an error status, it cleans up: waits until the volume leaves its transient status,
deletes its attachments and the volume. A request refused at connect (the api is down) was
never sent and is sent again until the deadline; one cut off in flight is recorded with
status 0 ("lost in flight": its outcome is unknown, so it counts for nothing).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

TYPES = ("chaos-a", "chaos-b")
BACKENDS = ("cinderblock@file-a", "cinderblock@file-b")
VERSION = "volume 3.44"
STEP_TIMEOUT = 60.0  # a step's outcome, or a refused connection's retries
POLL = 0.05
CONNECTOR = {"host": "compute-chaos", "mountpoint": "/dev/vdb", "initiator": "iqn.chaos"}
TRANSIENT = frozenset(
    {
        "creating",
        "extending",
        "attaching",
        "detaching",
        "deleting",
        "retyping",
        "maintenance",
        "downloading",
        "uploading",
        "reverting",
        "managing",
        "unmanaging",
        "backing-up",
        "restoring-backup",
    }
)
UNKNOWN: dict[str, Any] = {"status": "unknown"}  # a volume the api would not show
MIGRATING = frozenset({"starting", "migrating", "completing"})
# Answers that change something (GETs are not recorded); a failed step's clean-up sends
# "cleanup-detach" and "cleanup-delete" too.
KINDS = (
    "create",
    "extend",
    "attach-reserve",
    "attach-connect",
    "attach-complete",
    "extend-in-use",
    "detach",
    "retype",
    "migrate",
    "delete",
)


@dataclass(frozen=True)
class Answer:
    kind: str
    status: int  # 0: no answer (cut off in flight, timed out)
    request_id: str | None
    volume_id: str | None
    at: float


@dataclass
class LoadResult:
    answers: list[Answer] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    in_use_extended: list[str] = field(default_factory=list)  # Nova should hear of these
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(1 for a in self.answers if 200 <= a.status < 300)


def transient(volume: dict[str, Any]) -> bool:
    return volume.get("status") in TRANSIENT or volume.get("migration_status") in MIGRATING


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str, project: str) -> None:
        self.session = session
        self.base = f"{url.rstrip('/')}/v3/{project}"
        self.headers = {"X-Auth-Token": f"admin:{project}", "OpenStack-API-Version": VERSION}

    async def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any, str | None]:
        """One request; sent again only while the api refuses connections (never sent)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            try:
                async with self.session.request(
                    method, f"{self.base}{path}", json=body, headers=self.headers
                ) as resp:
                    raw = await resp.read()
                    rid = resp.headers.get("x-openstack-request-id")
                    try:
                        data = json.loads(raw) if raw else None
                    except ValueError:
                        data = raw.decode(errors="replace")
                    return resp.status, data, rid
            except aiohttp.ClientConnectorError:
                if time.monotonic() > deadline:
                    return 0, None, None
                await asyncio.sleep(POLL)
            except (aiohttp.ClientError, TimeoutError):
                return 0, None, None

    async def get(self, path: str) -> tuple[int, Any]:
        """A read, retried through outages (any error, 5xx) until the step deadline."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            status, body, _ = await self.send("GET", path)
            if status and status < 500:
                return status, body
            if time.monotonic() > deadline:
                return status, body
            await asyncio.sleep(POLL)


class Load:
    """``clients`` clients, ``volumes`` volumes each, in one project."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        project: str,
        clients: int,
        volumes: int,
        on_answer: Callable[[Answer], None] | None = None,
    ) -> None:
        self.client = Client(session, url, project)
        self.project = project
        self.clients = clients
        self.volumes = volumes
        self.result = LoadResult()
        self.on_answer = on_answer
        self.t0 = time.monotonic()

    @property
    def planned(self) -> int:
        return self.clients * self.volumes * len(KINDS)

    async def prepare(self) -> None:
        """Unlimited quotas for the project, the two volume types (admin)."""
        quotas = {"volumes": -1, "gigabytes": -1, "snapshots": -1}
        await self.client.send("PUT", f"/os-quota-sets/{self.project}", {"quota_set": quotas})
        for name in TYPES:
            await self.client.send("POST", "/types", {"volume_type": {"name": name}})

    async def run(self) -> LoadResult:
        await asyncio.gather(*(self._client(i) for i in range(self.clients)))
        return self.result

    async def _client(self, index: int) -> None:
        for _ in range(self.volumes):
            await self._life()

    # -- one volume's life -----------------------------------------------------------------

    async def _act(
        self, kind: str, method: str, path: str, body: Any, vid: str | None
    ) -> tuple[int, Any]:
        status, data, rid = await self.client.send(method, path, body)
        answer = Answer(kind, status, rid, vid, time.monotonic() - self.t0)
        self.result.answers.append(answer)
        if self.on_answer is not None:
            self.on_answer(answer)
        return status, data

    async def _until(
        self, vid: str, done: Callable[[dict[str, Any] | None], bool]
    ) -> dict[str, Any] | None:
        """Poll the volume until ``done`` (None: it is gone), an error status, or the
        deadline; the last state seen (None when gone)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            status, body = await self.client.get(f"/volumes/{vid}")
            volume: dict[str, Any] | None = UNKNOWN  # no answer: neither gone nor settled
            if status == 200 and isinstance(body, dict):
                volume = body.get("volume")
            elif status == 404:
                volume = None
            if done(volume) or (volume is None and not done(None)):
                return volume
            if volume is not None and str(volume.get("status", "")).startswith("error"):
                return volume
            if volume is not None and volume.get("migration_status") == "error":
                return volume
            if time.monotonic() > deadline:
                self.result.problems.append(f"{vid}: step not done after {STEP_TIMEOUT:g} s")
                return volume
            await asyncio.sleep(POLL)

    async def _life(self) -> None:
        status, data = await self._act(
            "create",
            "POST",
            "/volumes",
            {"volume": {"size": 1, "volume_type": TYPES[0], "name": "chaos"}},
            None,
        )
        if not 200 <= status < 300:
            return
        vid = data["volume"]["id"]
        self.result.volumes.append(vid)
        if await self._steps(vid):
            return
        await self._cleanup(vid)

    async def _steps(self, vid: str) -> bool:
        """The life after create; True when the volume was deleted as planned."""

        def state(status: str, **want: Any) -> Callable[[dict[str, Any] | None], bool]:
            def done(v: dict[str, Any] | None) -> bool:
                return (
                    v is not None
                    and v["status"] == status
                    and not transient(v)
                    and all(v.get(k) == w for k, w in want.items())
                )

            return done

        async def step(kind: str, method: str, path: str, body: Any, done: Any) -> Any:
            status, data = await self._act(kind, method, path, body, vid)
            if not 200 <= status < 300:
                return None
            if done is None:
                return data if data is not None else {}
            volume = await self._until(vid, done)
            return (data if data is not None else {}) if done(volume) else None

        action = f"/volumes/{vid}/action"
        if not await self._ok(self._until(vid, state("available"))):
            return False
        if (
            await step(
                "extend", "POST", action, {"os-extend": {"new_size": 2}}, state("available", size=2)
            )
            is None
        ):
            return False
        server = str(uuid.uuid4())
        made = await step(
            "attach-reserve",
            "POST",
            "/attachments",
            {"attachment": {"volume_uuid": vid, "instance_uuid": server}},
            None,
        )
        if made is None:
            return False
        aid = made["attachment"]["id"]
        connect = {"attachment": {"connector": CONNECTOR}}
        if await step("attach-connect", "PUT", f"/attachments/{aid}", connect, None) is None:
            return False
        if (
            await step(
                "attach-complete",
                "POST",
                f"/attachments/{aid}/action",
                {"os-complete": None},
                state("in-use"),
            )
            is None
        ):
            return False
        if (
            await step(
                "extend-in-use",
                "POST",
                action,
                {"os-extend": {"new_size": 3}},
                state("in-use", size=3),
            )
            is None
        ):
            return False
        self.result.in_use_extended.append(vid)
        if await step("detach", "DELETE", f"/attachments/{aid}", None, state("available")) is None:
            return False
        retype = {"os-retype": {"new_type": TYPES[1], "migration_policy": "never"}}
        if (
            await step("retype", "POST", action, retype, state("available", volume_type=TYPES[1]))
            is None
        ):
            return False
        status, body = await self.client.get(f"/volumes/{vid}")
        host = (body or {}).get("volume", {}).get("os-vol-host-attr:host") or ""
        target = next(b for b in BACKENDS if not host.startswith(f"{b}#"))
        migrate = {"os-migrate_volume": {"host": target}}
        if (
            await step(
                "migrate", "POST", action, migrate, state("available", migration_status="success")
            )
            is None
        ):
            return False
        status, _ = await self._act("delete", "DELETE", f"/volumes/{vid}", None, vid)
        if not 200 <= status < 300:
            return False
        return await self._until(vid, lambda v: v is None) is None

    @staticmethod
    async def _ok(wait: Any) -> bool:
        volume = await wait
        return volume is not None and volume.get("status") == "available"

    async def _cleanup(self, vid: str) -> None:
        """After a step that failed: let the volume settle, detach it, delete it (each
        request tried a few times: an outage may still be on)."""
        volume = await self._until(vid, lambda v: v is None or not transient(v))
        for _ in range(5):
            if volume is None:
                return
            for attachment in volume.get("attachments") or []:
                aid = attachment.get("attachment_id") or attachment.get("id")
                await self._act("cleanup-detach", "DELETE", f"/attachments/{aid}", None, vid)
            status, body = await self.client.get(f"/attachments?volume_id={vid}")
            for attachment in (body or {}).get("attachments", []) if status == 200 else []:
                path = f"/attachments/{attachment['id']}"
                await self._act("cleanup-detach", "DELETE", path, None, vid)
            volume = await self._until(vid, lambda v: v is None or not transient(v))
            if volume is None:
                return
            await self._act("cleanup-delete", "DELETE", f"/volumes/{vid}", None, vid)
            volume = await self._until(vid, lambda v: v is None or not transient(v))
            if volume is not None:
                await asyncio.sleep(1.0)  # an outage still on: try again shortly
        self.result.problems.append(f"{vid}: could not be deleted ({volume and volume['status']})")
