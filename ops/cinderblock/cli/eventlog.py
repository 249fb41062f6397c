"""A realistic event log of N events for replay tests and benchmarks (`cinderblock bench-log`).

Every event is produced by the real aggregates (Volume, Snapshot, VolumeType, ProjectQuota)
through their command methods, so the rules hold (no extend of a deleted volume, no delete
with snapshots…), and stored through the store's mapper; rows go in with binary COPY in
chunks (one transaction each), as the store's own save could have written them.

The mix follows a volume's life: create (quota usage), complete, then extends (quota
reservation committed; now and then one that finds no room, its reservation released and a
user message recorded, which is sometimes deleted later), attach/detach by both the legacy
actions and the attachments API, bootable, metadata, image metadata, read-only flag,
snapshots (created, completed, deleted), and finally delete (usage given back); volume
types get extra specs and access changes along the way.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from cinderblock.domain.errors import VolumeError
from cinderblock.domain.quota import ProjectQuota
from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_type import VolumeType
from cinderblock.readmodels.messages import message_id
from cinderblock.store.mapping import make_mapper
from cinderblock.store.schema import EVENTS_CHANNEL, EVENTS_DDL

PROJECTS = 20
TYPES = 4
LIVE_VOLUMES = 2_000
CHUNK = 20_000
HOSTS = ("cb@file#pool-a", "cb@file#pool-b")

Row = tuple[uuid.UUID, int, str, bytes, str]


class LogWriter:
    """Turns aggregates' pending events into rows."""

    def __init__(self) -> None:
        self.mapper = make_mapper()
        self.rows: list[Row] = []
        self.meta = json.dumps({"request_id": "req-bench", "user_id": "bench", "action": "bench"})

    def take(self, *aggregates: Any) -> None:
        for aggregate in aggregates:
            for e in aggregate.collect_events():
                s = self.mapper.to_stored_event(e)
                self.rows.append(
                    (s.originator_id, s.originator_version, s.topic, s.state, self.meta)
                )


class World:
    def __init__(self, rng: random.Random, out: LogWriter) -> None:
        self.rng, self.out = rng, out
        salt = f"{rng.getrandbits(24):06x}"  # --append with another --seed: new projects
        self.projects = [f"project-{salt}-{i:02d}" for i in range(PROJECTS)]
        self.quotas = {p: ProjectQuota.start(p) for p in self.projects}
        self.types = [
            VolumeType.define(
                uuid.uuid4(),
                name=f"type-{i}",
                description=None,
                is_public=True,
                extra_specs={"volume_backend_name": "file"},
            )
            for i in range(TYPES)
        ]
        self.volumes: list[Volume] = []
        self.snapshots: dict[str, Snapshot] = {}
        self.messages: dict[uuid.UUID, list[str]] = {}  # volume → its user messages
        out.take(*self.quotas.values(), *self.types)

    def new_volume(self) -> None:
        rng = self.rng
        project = rng.choice(self.projects)
        vtype = rng.choice(self.types)
        size = rng.choice((1, 1, 2, 5, 10, 20))
        volume = Volume.create(
            uuid.uuid4(),
            project_id=project,
            user_id="bench-user",
            name=f"vol-{rng.randrange(10**6)}",
            description=None,
            size_gb=size,
            availability_zone="nova",
            volume_type_id=str(vtype.id),
            volume_type_name=vtype.name,
            metadata={"tier": rng.choice(("gold", "silver"))},
            bootable=False,
            multiattach=False,
        )
        quota = self.quotas[project]
        quota.consume({"volumes": 1, "gigabytes": size}, {}, size_gb=size, reason="create")
        volume.complete_create(rng.choice(HOSTS))
        self.volumes.append(volume)
        self.out.take(volume, quota)

    def act(self) -> None:
        rng = self.rng
        population = len(self.volumes)
        if (
            population < 20
            or (population < LIVE_VOLUMES and rng.random() < 0.15)
            or rng.random() < 0.02
        ):
            self.new_volume()
            return
        volume = self.volumes[rng.randrange(len(self.volumes))]
        actions = _ACTIONS.get(str(volume.status.value), ())
        if not actions:
            return
        action = rng.choices(actions, weights=[weight for *_, weight in actions])[0][1]
        try:
            touched = action(self, volume)
        except VolumeError:
            # A refused step keeps what already happened before it (e.g. a reserve).
            self.out.take(volume)
            return
        self.out.take(volume, *touched)

    def forget(self, volume: Volume) -> None:
        self.volumes.remove(volume)


def _extend(w: World, v: Volume) -> list[Any]:
    rid = uuid.uuid4().hex
    quota = w.quotas[v.project_id]
    delta = w.rng.choice((1, 2, 5))
    # The volume's rules first: a refused extend must leave no reservation behind.
    v.request_extend(
        v.size_gb + delta, in_use_allowed=v.status.value == "in-use", reservation_id=rid
    )
    quota.reserve(rid, {"gigabytes": delta}, {}, size_gb=v.size_gb + delta)
    v.complete_extend(v.version)
    quota.commit(rid)
    return [quota]


def _extend_without_room(w: World, v: Volume) -> list[Any]:
    """An extend the backend has no room for: the volume keeps its status, the reservation
    is released, and the failure records a user message."""
    rid = uuid.uuid4().hex
    quota = w.quotas[v.project_id]
    v.request_extend(v.size_gb + 1, in_use_allowed=v.status.value == "in-use", reservation_id=rid)
    quota.reserve(rid, {"gigabytes": 1}, {}, size_gb=v.size_gb + 1)
    v.fail_extend(v.version, "no pool has 1 GiB free (most free: 0 GiB)", restore=True)
    quota.release(rid)
    w.messages.setdefault(v.id, []).append(str(message_id(v.id, v.version)))
    return [quota]


def _delete_message(w: World, v: Volume) -> list[Any]:
    recorded = w.messages.get(v.id)
    if recorded:
        v.delete_message(recorded.pop(0))
    return []


def _attach(w: World, v: Volume) -> list[Any]:
    v.reserve()
    v.attach(
        str(uuid.uuid4()),
        mountpoint="/dev/vdb",
        mode="rw",
        instance_uuid=str(uuid.uuid4()),
        host_name=None,
    )
    return []


def _attachment_api(w: World, v: Volume) -> list[Any]:
    aid = str(uuid.uuid4())
    v.create_attachment(aid, instance_uuid=str(uuid.uuid4()), mode=None)
    connector = {"host": f"compute-{w.rng.randrange(50)}", "mountpoint": "/dev/vdc"}
    v.connect_attachment(aid, connector, {"driver_volume_type": "local", "data": {}})
    v.complete_attachment(aid)
    return []


def _detach(w: World, v: Volume) -> list[Any]:
    ids = v.attachment_ids
    if ids:
        v.begin_detaching()
        v.detach(ids[0])
    return []


def _bootable(w: World, v: Volume) -> list[Any]:
    v.set_bootable(not v.bootable)
    return []


def _metadata(w: World, v: Volume) -> list[Any]:
    v.update({"metadata": {"tier": w.rng.choice(("gold", "silver", "bronze"))}})
    return []


def _rename(w: World, v: Volume) -> list[Any]:
    v.update({"name": f"renamed-{w.rng.randrange(10**6)}", "description": "bench"})
    return []


def _image_metadata(w: World, v: Volume) -> list[Any]:
    v.set_image_metadata({"os_distro": w.rng.choice(("ubuntu", "fedora"))})
    return []


def _readonly(w: World, v: Volume) -> list[Any]:
    v.update_readonly_flag(w.rng.random() < 0.5)
    return []


def _snapshot(w: World, v: Volume) -> list[Any]:
    sid = uuid.uuid4()
    v.take_snapshot(str(sid), force=False, in_use_ok=True)
    snap = Snapshot.take(
        sid,
        volume_id=str(v.id),
        project_id=v.project_id,
        user_id="bench-user",
        name="snap",
        description=None,
        volume_size=v.size_gb,
        metadata={},
        volume_type_name=v.volume_type_name,
    )
    snap.complete_create()
    w.snapshots[str(sid)] = snap
    return [snap]


def _delete_snapshot(w: World, v: Volume) -> list[Any]:
    sid = v.latest_snapshot()
    if sid is None:
        return []
    snap = w.snapshots.pop(sid)
    snap.request_delete()
    snap.complete_delete()
    v.forget_snapshot(sid)
    return [snap]


def _delete(w: World, v: Volume) -> list[Any]:
    touched: list[Any] = []
    while v.snapshot_ids:
        touched += _delete_snapshot(w, v)
    v.request_delete()
    v.complete_delete()
    quota = w.quotas[v.project_id]
    quota.release_usage({"volumes": 1, "gigabytes": v.size_gb}, reason="delete")
    w.forget(v)
    w.messages.pop(v.id, None)
    return [*touched, quota]


def _type_change(w: World, v: Volume) -> list[Any]:
    vtype = w.rng.choice(w.types)
    if w.rng.random() < 0.5:
        vtype.set_extra_specs({"bench:k": str(w.rng.randrange(100))})
    else:
        vtype.add_access(f"project-x{w.rng.randrange(1000)}")
    return [vtype]


Action = Callable[[World, Volume], list[Any]]
_COMMON: list[tuple[str, Action, int]] = [
    ("extend", _extend, 10),
    ("bootable", _bootable, 8),
    ("metadata", _metadata, 8),
    ("rename", _rename, 4),
    ("snapshot", _snapshot, 6),
    ("delete_snapshot", _delete_snapshot, 5),
    ("type", _type_change, 1),
    ("extend_without_room", _extend_without_room, 2),
    ("delete_message", _delete_message, 1),
]
_ACTIONS: dict[str, list[tuple[str, Action, int]]] = {
    "available": [
        *_COMMON,
        ("attach", _attach, 10),
        ("attachment_api", _attachment_api, 6),
        ("image_metadata", _image_metadata, 5),
        ("readonly", _readonly, 2),
        ("delete", _delete, 9),
    ],
    "in-use": [*_COMMON, ("detach", _detach, 25)],
    "reserved": [("detach", _detach, 1)],
}


async def generate(
    dsn: str,
    events: int,
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, float]:
    """Append ``events`` events to the log of ``dsn``. Returns (events, seconds)."""
    started = time.perf_counter()
    rng = random.Random(seed)
    out = LogWriter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(EVENTS_DDL)
        world = World(rng, out)
        written = 0
        while written < events:
            while len(out.rows) < min(CHUNK, events - written):
                world.act()
            chunk, out.rows = out.rows[: events - written], out.rows[events - written :]
            await conn.copy_records_to_table(
                "events",
                records=chunk,
                columns=["originator_id", "originator_version", "topic", "state", "meta"],
            )
            written += len(chunk)
            if progress:
                progress(written, events)
        await conn.execute(f"NOTIFY {EVENTS_CHANNEL}")
    finally:
        await conn.close()
    return written, time.perf_counter() - started
