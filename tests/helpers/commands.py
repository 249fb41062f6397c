"""The command service (`Volumes`) on the in-memory event store, for unit tests: a caller's
view with ways to set things up (`created`, `available`) and to look at the log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cinderblock.domain.quota import ProjectQuota, quota_id
from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.volume import Volume
from cinderblock.store.eventstore import START, Position
from cinderblock.store.mapping import event_name
from cinderblock.store.memory import MemoryEventStore
from cinderblock.store.volumes import Caller, Volumes, VolumesConfig

HOST = "h@file#pool"
LIMITS = {
    "volumes": 3,
    "gigabytes": 10,
    "snapshots": 2,
    "per_volume_gigabytes": -1,
}


@dataclass
class Service:
    """`Volumes` on a `MemoryEventStore`, one project's caller, and ways to look."""

    store: MemoryEventStore
    volumes: Volumes
    caller: Caller

    # ------------------------------------------------------------ given

    async def created(self, size_gb: int = 1, **fields: Any) -> str:
        """A volume in ``creating`` in the caller's project."""
        vid = uuid.uuid4()
        await self.volumes.create_volume(
            self.caller,
            vid,
            meta={"request_id": "req-create"},
            **{**volume_fields(size_gb), **fields},
        )
        return str(vid)

    async def available(self, size_gb: int = 1, **fields: Any) -> str:
        """A volume the create saga placed on HOST."""
        vid = await self.created(size_gb, **fields)
        assert await self.volumes.complete_create(vid, HOST, meta={})
        return vid

    # ------------------------------------------------------------ then

    async def volume(self, volume_id: str) -> Volume:
        volume = await self.store.load(uuid.UUID(volume_id), Volume)
        assert volume is not None
        return volume

    async def snapshot(self, snapshot_id: str) -> Snapshot:
        snapshot = await self.store.load(uuid.UUID(snapshot_id), Snapshot)
        assert snapshot is not None
        return snapshot

    async def quota(self, project_id: str | None = None) -> ProjectQuota:
        quota = await self.store.load(quota_id(project_id or self.caller.project_id), ProjectQuota)
        assert quota is not None
        return quota

    async def usage(self, *resources: str) -> tuple[int, ...]:
        quota = await self.quota()
        return tuple(quota.usage(r) for r in resources)

    def events(self, aggregate_id: str | uuid.UUID | None = None) -> list[str]:
        """Names of the events in the log (of one aggregate), in order."""
        rows = self.store.log.rows
        if aggregate_id is not None:
            rows = [r for r in rows if r.originator_id == uuid.UUID(str(aggregate_id))]
        return [event_name(r.topic) for r in rows]

    def appended(self, at: Position) -> list[str]:
        """Names of the events of the append that ended at ``at``."""
        assert at != START
        return [event_name(r.topic) for r in self.store.log.rows if r.tx_id == at.tx_id]

    @property
    def appends(self) -> int:
        return self.store.log.appends


def volume_fields(size_gb: int = 1) -> dict[str, Any]:
    return {
        "name": "vol",
        "description": None,
        "size_gb": size_gb,
        "metadata": {},
        "bootable": False,
        "multiattach": False,
    }


def service_on(
    store: MemoryEventStore | None = None,
    *,
    limits: dict[str, int] | None = None,
    conflict_deadline: float = 5.0,
) -> Service:
    """`Volumes` on ``store`` (a new one unless given), for a caller of a new project."""
    store = store if store is not None else MemoryEventStore()
    config = VolumesConfig(quota_limits=limits or LIMITS, conflict_deadline=conflict_deadline)
    volumes = Volumes(store, config)
    return Service(store, volumes, Caller("user-1", uuid.uuid4().hex))
