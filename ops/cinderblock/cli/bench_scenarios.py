"""What `cinderblock bench` does to a running Cinderblock: one class per scenario.

Each worker owns a fresh project (quotas are per project) and, for most scenarios, one
volume. `op()` performs one operation and returns the latency it measured; the `_e2e`
scenarios time from the request until the read model shows the asynchronous work done
(polling GET), which is what a user of the API waits for.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import aiohttp

POLL_INTERVAL = 0.001  # between GETs while waiting for a volume to settle
POLL_TIMEOUT = 30.0
MAX_SIZE = 50  # GiB; extend_e2e recreates its volume beyond this
REVERT_MV = "volume 3.40"

Volume = dict[str, Any]


class BadStatusError(Exception):
    def __init__(self, what: str, status: int, body: str) -> None:
        super().__init__(f"{what} -> {status}: {body}")
        self.status = status


class Api:
    """The block storage API as seen by one fresh project (noauth: the caller is admin)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        project = uuid.uuid4().hex
        self.project = project
        self.session = session
        self.root = f"{url.rstrip('/')}/v3/{project}"
        self.base = f"{self.root}/volumes"
        self.headers = {"X-Auth-Token": f"bench:{project}"}

    async def call(
        self,
        method: str,
        path: str,
        expect: tuple[int, ...],
        body: Volume | None = None,
        *,
        root: bool = False,
        version: str | None = None,
    ) -> tuple[int, bytes]:
        url = (self.root if root else self.base) + path
        headers = self.headers
        if version is not None:
            headers = {**headers, "OpenStack-API-Version": version}
        async with self.session.request(method, url, json=body, headers=headers) as resp:
            data = await resp.read()
        if resp.status not in expect:
            text = data.decode(errors="replace")[:300]
            raise BadStatusError(f"{method} {path or '/'}", resp.status, text)
        return resp.status, data

    async def get(self, volume_id: str) -> Volume:
        _, data = await self.call("GET", f"/{volume_id}", (200,))
        volume: Volume = json.loads(data)["volume"]
        return volume

    async def create(self, size: int = 1, **fields: Any) -> str:
        body = {"volume": {"size": size, **fields}}
        _, data = await self.call("POST", "", (202,), body)
        return str(json.loads(data)["volume"]["id"])

    async def action(
        self, volume_id: str, body: Volume, expect: int, version: str | None = None
    ) -> None:
        await self.call("POST", f"/{volume_id}/action", (expect,), body, version=version)

    async def wait_for(self, volume_id: str, done: Callable[[Volume], bool]) -> Volume:
        deadline = time.perf_counter() + POLL_TIMEOUT
        while True:
            volume = await self.get(volume_id)
            if done(volume):
                return volume
            if str(volume["status"]).startswith("error") or volume.get("migration_status") == (
                "error"
            ):
                raise BadStatusError(
                    f"volume {volume_id}",
                    200,
                    f"status {volume['status']} migration {volume.get('migration_status')}",
                )
            if time.perf_counter() > deadline:
                raise TimeoutError(f"volume {volume_id} still {volume['status']}")
            await asyncio.sleep(POLL_INTERVAL)

    async def wait_gone(self, path: str, *, root: bool = False) -> None:
        deadline = time.perf_counter() + POLL_TIMEOUT
        while (await self.call("GET", path, (200, 404), root=root))[0] != 404:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{path} not gone")
            await asyncio.sleep(POLL_INTERVAL)

    async def delete(self, volume_id: str) -> None:
        """DELETE, then wait until GET answers 404."""
        await self.call("DELETE", f"/{volume_id}", (202,))
        await self.wait_gone(f"/{volume_id}")

    async def snapshot(self, volume_id: str) -> str:
        """Create a snapshot and wait until it is available."""
        body = {"snapshot": {"volume_id": volume_id, "name": "bench"}}
        _, data = await self.call("POST", "/snapshots", (202,), body, root=True)
        snapshot_id = str(json.loads(data)["snapshot"]["id"])
        deadline = time.perf_counter() + POLL_TIMEOUT
        while True:
            _, data = await self.call("GET", f"/snapshots/{snapshot_id}", (200,), root=True)
            status = json.loads(data)["snapshot"]["status"]
            if status == "available":
                return snapshot_id
            if status.startswith("error") or time.perf_counter() > deadline:
                raise BadStatusError(f"snapshot {snapshot_id}", 200, f"status {status}")
            await asyncio.sleep(POLL_INTERVAL)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        await self.call("DELETE", f"/snapshots/{snapshot_id}", (202,), root=True)
        await self.wait_gone(f"/snapshots/{snapshot_id}", root=True)

    async def hosts(self) -> list[str]:
        """Every pool's `host@backend#pool` (admin), in a stable order."""
        _, data = await self.call("GET", "/scheduler-stats/get_pools", (200,), root=True)
        return sorted(pool["name"] for pool in json.loads(data)["pools"])

    async def volume_type(self, name: str) -> None:
        """Create a volume type without extra specs; an existing one (409) is fine."""
        body = {"volume_type": {"name": name}}
        await self.call("POST", "/types", (200, 409), body, root=True)


def available(volume: Volume) -> bool:
    return volume["status"] == "available"


class Scenario:
    """One worker's loop body; `op` returns the latency it measured, in seconds."""

    name: ClassVar[str]
    needs_volume: ClassVar[bool] = True

    def __init__(self, api: Api) -> None:
        self.api = api
        self.volume: str | None = None
        self.size = 1

    async def setup(self) -> None:
        if self.needs_volume:
            self.volume, self.size = await self.api.create(), 1
            await self.api.wait_for(self.volume, available)

    async def teardown(self) -> None:
        volume, self.volume = self.volume, None
        if volume is not None:
            await self.api.delete(volume)

    async def op(self) -> float:
        raise NotImplementedError

    @property
    def vid(self) -> str:
        assert self.volume is not None
        return self.volume


class GetVolume(Scenario):
    name = "get_volume"

    async def op(self) -> float:
        t0 = time.perf_counter()
        await self.api.call("GET", f"/{self.vid}", (200,))
        return time.perf_counter() - t0


class SetBootable(Scenario):
    name = "set_bootable"
    bootable = False

    async def op(self) -> float:
        self.bootable = not self.bootable
        t0 = time.perf_counter()
        await self.api.action(self.vid, {"os-set_bootable": {"bootable": self.bootable}}, 200)
        return time.perf_counter() - t0


class ExtendE2E(Scenario):
    name = "extend_e2e"

    async def op(self) -> float:
        if self.size >= MAX_SIZE:
            await self.teardown()
            await self.setup()
        new = self.size + 1
        t0 = time.perf_counter()
        await self.api.action(self.vid, {"os-extend": {"new_size": new}}, 202)
        await self.api.wait_for(self.vid, lambda v: available(v) and v["size"] == new)
        self.size = new
        return time.perf_counter() - t0


class CreateE2E(Scenario):
    name = "create_e2e"
    needs_volume = False

    async def op(self) -> float:
        t0 = time.perf_counter()
        self.volume = await self.api.create()
        await self.api.wait_for(self.vid, available)
        latency = time.perf_counter() - t0
        await self.teardown()  # untimed; waits for the 404 so the quota never runs out
        return latency


class DeleteE2E(Scenario):
    """DELETE until GET answers 404 (the volume's file removed, quota released)."""

    name = "delete_e2e"

    async def op(self) -> float:
        t0 = time.perf_counter()
        await self.api.delete(self.vid)
        latency = time.perf_counter() - t0
        self.volume = None  # the next loop makes a fresh one, untimed
        return latency


class ForceDeleteE2E(Scenario):
    name = "force_delete_e2e"

    async def op(self) -> float:
        t0 = time.perf_counter()
        await self.api.action(self.vid, {"os-force_delete": {}}, 202)
        await self.api.wait_gone(f"/{self.vid}")
        latency = time.perf_counter() - t0
        self.volume = None
        return latency


class UnmanageE2E(Scenario):
    """os-unmanage until the volume leaves the API (its file stays in the pool)."""

    name = "unmanage_e2e"

    async def op(self) -> float:
        t0 = time.perf_counter()
        await self.api.action(self.vid, {"os-unmanage": {}}, 202)
        await self.api.wait_gone(f"/{self.vid}")
        latency = time.perf_counter() - t0
        self.volume = None
        return latency


class MigrateE2E(Scenario):
    """os-migrate_volume to the next pool until migration_status is success; the volume
    moves back and forth between the pools."""

    name = "migrate_e2e"

    async def op(self) -> float:
        volume = await self.api.get(self.vid)
        hosts = await self.api.hosts()
        here = volume["os-vol-host-attr:host"]
        there = hosts[(hosts.index(here) + 1) % len(hosts)] if here in hosts else hosts[0]
        t0 = time.perf_counter()
        await self.api.action(self.vid, {"os-migrate_volume": {"host": there}}, 202)
        await self.api.wait_for(
            self.vid,
            lambda v: (
                v["os-vol-host-attr:host"] == there
                and v.get("migration_status") == "success"
                and available(v)
            ),
        )
        return time.perf_counter() - t0


class RetypeE2E(Scenario):
    """os-retype between two types without extra specs: in place, no data moves."""

    name = "retype_e2e"
    types = ("bench-retype-a", "bench-retype-b")

    async def setup(self) -> None:
        for name in self.types:
            await self.api.volume_type(name)
        self.volume = await self.api.create(volume_type=self.types[0])
        await self.api.wait_for(self.volume, available)
        self.current = 0

    async def op(self) -> float:
        target = self.types[1 - self.current]
        body = {"os-retype": {"new_type": target, "migration_policy": "never"}}
        t0 = time.perf_counter()
        await self.api.action(self.vid, body, 202)
        await self.api.wait_for(self.vid, lambda v: available(v) and v["volume_type"] == target)
        self.current = 1 - self.current
        return time.perf_counter() - t0


class RevertE2E(Scenario):
    """revert (3.40) to the volume's latest snapshot until the volume is available again."""

    name = "revert_e2e"

    async def setup(self) -> None:
        await super().setup()
        self.snapshot = await self.api.snapshot(self.vid)

    async def teardown(self) -> None:
        snapshot, self.snapshot = getattr(self, "snapshot", None), None
        if snapshot is not None and self.volume is not None:
            await self.api.delete_snapshot(snapshot)
        await super().teardown()

    async def op(self) -> float:
        body = {"revert": {"snapshot_id": self.snapshot}}
        t0 = time.perf_counter()
        await self.api.action(self.vid, body, 202, version=REVERT_MV)
        await self.api.wait_for(self.vid, available)
        return time.perf_counter() - t0


class SnapshotE2E(Scenario):
    """Snapshot create until available (the delete afterwards is untimed)."""

    name = "snapshot_e2e"

    async def op(self) -> float:
        t0 = time.perf_counter()
        snapshot = await self.api.snapshot(self.vid)
        latency = time.perf_counter() - t0
        await self.api.delete_snapshot(snapshot)
        return latency


class UploadE2E(Scenario):
    """os-volume_upload_image until the volume is available again (the bytes are in the
    image store)."""

    name = "upload_e2e"

    async def op(self) -> float:
        body = {
            "os-volume_upload_image": {
                "image_name": f"bench-{uuid.uuid4().hex[:8]}",
                "disk_format": "raw",
                "container_format": "bare",
            }
        }
        t0 = time.perf_counter()
        await self.api.action(self.vid, body, 202)
        await self.api.wait_for(self.vid, available)
        return time.perf_counter() - t0


SCENARIOS: tuple[type[Scenario], ...] = (
    GetVolume,
    SetBootable,
    ExtendE2E,
    CreateE2E,
    DeleteE2E,
    ForceDeleteE2E,
    UnmanageE2E,
    MigrateE2E,
    RetypeE2E,
    RevertE2E,
    SnapshotE2E,
    UploadE2E,
)
# What a worker records as an error and recovers from: besides bad statuses and transport
# failures, malformed bodies (KeyError, TypeError, ValueError) are the server's fault too.
FAILURES = (BadStatusError, aiohttp.ClientError, TimeoutError, KeyError, TypeError, ValueError)
