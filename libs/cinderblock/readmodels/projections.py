"""Projections: each event's effect on the read-model tables, as one SQL statement.

A projection is a statement plus the arguments it takes from an event. Consecutive events
with the same statement go to PostgreSQL as one pipelined ``executemany``, in the
transaction that also moves the tracking row. A row's ``version`` makes every update
idempotent: an event at or below it changes nothing. Live projection and replay from
position 0 run the same statements.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any
from uuid import UUID

import asyncpg

from cinderblock.readmodels.quarantine import (
    SetAside,
    Stopped,
    describe,
    log_set_aside,
    record,
    retry_will_fix,
)
from cinderblock.readmodels.schema import PROJECTED_CHANNEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectionEvent:
    """What a projection needs of one stored event."""

    name: str  # e.g. "Volume.Extended"
    aggregate_id: UUID
    version: int
    timestamp: datetime
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Projection:
    sql: str
    args: Callable[[ProjectionEvent], tuple[Any, ...]]


def _created_args(e: ProjectionEvent) -> tuple[Any, ...]:
    d = e.data
    return (
        e.aggregate_id,
        d["project_id"],
        d["user_id"],
        d["name"],
        d["description"],
        d["size_gb"],
        d["availability_zone"],
        d["volume_type_id"],
        d["volume_type_name"],
        d["bootable"],
        d["multiattach"],
        json.dumps(d["metadata"]),
        e.timestamp,
        e.version,
    )


VOLUME_CREATED = Projection(
    """
    INSERT INTO volumes (id, project_id, user_id, name, description, size, status,
        availability_zone, volume_type_id, volume_type_name, bootable, multiattach,
        metadata, created_at, version)
    VALUES ($1, $2, $3, $4, $5, $6, 'creating', $7, $8, $9, $10, $11, $12::jsonb, $13, $14)
    ON CONFLICT (id) DO NOTHING
    """,
    _created_args,
)


def _set(assignments: str, *fields: str, table: str = "volumes") -> Projection:
    """``UPDATE <table> SET <assignments>`` with the event's ``fields`` as $4, $5, …
    ($1 id, $2 version, $3 event time)."""
    sql = (
        f"UPDATE {table} SET {assignments}, updated_at = $3, version = $2 "
        "WHERE id = $1 AND version < $2"
    )

    def args(e: ProjectionEvent) -> tuple[Any, ...]:
        return (e.aggregate_id, e.version, e.timestamp, *(e.data[f] for f in fields))

    return Projection(sql, args)


# A migration hands back the status it held (maintenance, retyping) when it ends.
_RESTORE_HELD = (
    "status = CASE WHEN status IN ('maintenance', 'retyping') "
    "THEN coalesce(previous_status, 'available') ELSE status END"
)


def _attachment_insert_args(e: ProjectionEvent) -> tuple[Any, ...]:
    d = e.data
    return (
        UUID(d["attachment_id"]),
        e.aggregate_id,
        d["instance_uuid"],
        d["attached_host"],
        d["mountpoint"],
        d["mode"],
        e.timestamp,
        e.version,
    )


ATTACHMENT_ADDED = Projection(
    """
    INSERT INTO attachments (id, volume_id, instance_uuid, attached_host, mountpoint,
        attach_status, attach_mode, attach_time, version)
    VALUES ($1, $2, $3, $4, $5, 'attached', $6, $7, $8)
    ON CONFLICT (id) DO NOTHING
    """,
    _attachment_insert_args,
)


def _removed_attachments(e: ProjectionEvent) -> tuple[Any, ...]:
    d = e.data
    ids = d.get("removed_attachments")
    if ids is None:
        ids = [d["attachment_id"]] if d.get("attachment_id") else []
    return ([UUID(i) for i in ids], e.timestamp)


ATTACHMENTS_REMOVED = Projection(
    """
    UPDATE attachments SET deleted = true, attach_status = 'detached', detach_time = $2
    WHERE id = ANY($1::uuid[]) AND NOT deleted
    """,
    _removed_attachments,
)

_DROP_ATTACHED_MODE = (
    "admin_metadata = CASE WHEN $6::boolean THEN admin_metadata - 'attached_mode' "
    "ELSE admin_metadata END"
)


def _detached_args(e: ProjectionEvent) -> tuple[Any, ...]:
    d = e.data
    removed = bool(d.get("attachment_id")) or bool(d.get("removed_attachments"))
    return (e.aggregate_id, e.version, e.timestamp, d["status"], d["attach_status"], removed)


def _readonly_args(e: ProjectionEvent) -> tuple[Any, ...]:
    flag = "True" if e.data["readonly"] else "False"
    return (e.aggregate_id, e.version, e.timestamp, json.dumps({"readonly": flag}))


def _attached_args(e: ProjectionEvent) -> tuple[Any, ...]:
    return (e.aggregate_id, e.version, e.timestamp, json.dumps({"attached_mode": e.data["mode"]}))


def _json_arg(field: str) -> Callable[[ProjectionEvent], tuple[Any, ...]]:
    def args(e: ProjectionEvent) -> tuple[Any, ...]:
        return (e.aggregate_id, e.version, e.timestamp, json.dumps(e.data[field]))

    return args


def _update(assignments: str, args: Callable[[ProjectionEvent], tuple[Any, ...]]) -> Projection:
    return Projection(
        f"UPDATE volumes SET {assignments}, updated_at = $3, version = $2 "
        "WHERE id = $1 AND version < $2",
        args,
    )


def _reset_args(e: ProjectionEvent) -> tuple[Any, ...]:
    d = e.data
    return (
        e.aggregate_id,
        e.version,
        e.timestamp,
        d["status"],
        d["attach_status"],
        bool(d["removed_attachments"]),
        d["migration_status"],
    )


def _snapshot_created_args(e: ProjectionEvent) -> tuple[Any, ...]:
    d = e.data
    return (
        e.aggregate_id,
        UUID(d["volume_id"]),
        d["project_id"],
        d["user_id"],
        d["name"],
        d["description"],
        d["volume_size"],
        json.dumps(d["metadata"]),
        e.timestamp,
        e.version,
    )


SNAPSHOT_CREATED = Projection(
    """
    INSERT INTO snapshots (id, volume_id, project_id, user_id, name, description, size,
        status, progress, metadata, created_at, version)
    VALUES ($1, $2, $3, $4, $5, $6, $7, 'creating', '0%', $8::jsonb, $9, $10)
    ON CONFLICT (id) DO NOTHING
    """,
    _snapshot_created_args,
)


def _snap(assignments: str, *fields: str) -> Projection:
    return _set(assignments, *fields, table="snapshots")


SNAPSHOT_PROJECTIONS: dict[str, Projection | tuple[Projection, ...]] = {
    "Snapshot.Created": SNAPSHOT_CREATED,
    "Snapshot.CreateCompleted": _snap("status = 'available', progress = '100%'"),
    "Snapshot.CreateFailed": _snap("status = 'error'"),
    "Snapshot.Updated": Projection(
        "UPDATE snapshots SET "
        "name = CASE WHEN $4::jsonb ? 'name' THEN $4::jsonb ->> 'name' ELSE name END, "
        "description = CASE WHEN $4::jsonb ? 'description' "
        "THEN $4::jsonb ->> 'description' ELSE description END, "
        "metadata = CASE WHEN $4::jsonb ? 'metadata' THEN $4::jsonb -> 'metadata' "
        "ELSE metadata END, "
        "updated_at = $3, version = $2 WHERE id = $1 AND version < $2",
        _json_arg("changes"),
    ),
    "Snapshot.DeleteRequested": _snap("status = 'deleting'"),
    "Snapshot.Deleted": _snap("status = 'deleted', deleted = true"),
    "Snapshot.DeleteFailed": _snap("status = 'error_deleting'"),
    "Snapshot.RestoreStarted": _snap("status = 'restoring'"),
    "Snapshot.RestoreEnded": _snap("status = 'available'"),
    "Snapshot.StatusReset": _snap("status = $4", "status"),
}


def _type_created_args(e: ProjectionEvent) -> tuple[Any, ...]:
    d = e.data
    return (
        e.aggregate_id,
        d["name"],
        d["description"],
        d["is_public"],
        json.dumps(d["extra_specs"]),
        e.timestamp,
        e.version,
    )


def _type(assignments: str, args: Callable[[ProjectionEvent], tuple[Any, ...]]) -> Projection:
    return Projection(
        f"UPDATE volume_types SET {assignments}, updated_at = $3, version = $2 "
        "WHERE id = $1 AND version < $2",
        args,
    )


def _field_arg(field: str) -> Callable[[ProjectionEvent], tuple[Any, ...]]:
    def args(e: ProjectionEvent) -> tuple[Any, ...]:
        return (e.aggregate_id, e.version, e.timestamp, e.data[field])

    return args


def _encryption_args(e: ProjectionEvent) -> tuple[Any, ...]:
    fields = ("encryption_id", "provider", "cipher", "key_size", "control_location")
    return (e.aggregate_id, e.version, e.timestamp, json.dumps({f: e.data[f] for f in fields}))


TYPE_PROJECTIONS: dict[str, Projection | tuple[Projection, ...]] = {
    "VolumeType.Created": Projection(
        """
        INSERT INTO volume_types (id, name, description, is_public, extra_specs, created_at,
            version)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
        ON CONFLICT (id) DO NOTHING
        """,
        _type_created_args,
    ),
    "VolumeType.Updated": _type(
        "name = coalesce($4::jsonb ->> 'name', name), "
        "description = CASE WHEN $4::jsonb ? 'description' "
        "THEN $4::jsonb ->> 'description' ELSE description END, "
        "is_public = coalesce(($4::jsonb ->> 'is_public')::boolean, is_public)",
        _json_arg("changes"),
    ),
    "VolumeType.ExtraSpecsSet": _type("extra_specs = extra_specs || $4::jsonb", _json_arg("specs")),
    "VolumeType.ExtraSpecUnset": _type("extra_specs = extra_specs - $4::text", _field_arg("key")),
    "VolumeType.AccessAdded": _type(
        "projects = projects || jsonb_build_array($4::text)", _field_arg("project_id")
    ),
    "VolumeType.AccessRemoved": _type("projects = projects - $4::text", _field_arg("project_id")),
    "VolumeType.Deleted": _type(
        "deleted = true", lambda e: (e.aggregate_id, e.version, e.timestamp)
    ),
    "VolumeType.EncryptionCreated": _type(
        "encryption = $4::jsonb, encryption_created_at = $3, encryption_updated_at = NULL",
        _encryption_args,
    ),
    "VolumeType.EncryptionUpdated": _type(
        "encryption = encryption || $4::jsonb, encryption_updated_at = $3",
        _json_arg("changes"),
    ),
    "VolumeType.EncryptionDeleted": _type(
        "encryption = NULL, encryption_created_at = NULL, encryption_updated_at = NULL",
        lambda e: (e.aggregate_id, e.version, e.timestamp),
    ),
}


def _quota(assignments: str, *fields: str) -> Projection:
    return _set(assignments, *fields, table="quotas")


def _quota_json(assignments: str, field: str) -> Projection:
    return Projection(
        f"UPDATE quotas SET {assignments}, updated_at = $3, version = $2 "
        "WHERE id = $1 AND version < $2",
        _json_arg(field),
    )


QUOTA_PROJECTIONS: dict[str, Projection | tuple[Projection, ...]] = {
    "ProjectQuota.Created": Projection(
        "INSERT INTO quotas (id, project_id, updated_at, version) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (id) DO NOTHING",
        lambda e: (e.aggregate_id, e.data["project_id"], e.timestamp, e.version),
    ),
    "ProjectQuota.UsageAdjusted": _quota_json("in_use = cb_jsonb_add(in_use, $4::jsonb)", "deltas"),
    "ProjectQuota.Reserved": Projection(
        "UPDATE quotas SET reservations = reservations || jsonb_build_object($4::text, "
        "$5::jsonb), updated_at = $3, version = $2 WHERE id = $1 AND version < $2",
        lambda e: (
            e.aggregate_id,
            e.version,
            e.timestamp,
            e.data["reservation_id"],
            json.dumps(e.data["deltas"]),
        ),
    ),
    "ProjectQuota.ReservationCommitted": _quota(
        "in_use = cb_jsonb_add(in_use, coalesce(reservations -> $4, '{}'::jsonb)), "
        "reservations = reservations - $4",
        "reservation_id",
    ),
    "ProjectQuota.ReservationReleased": _quota(
        "reservations = reservations - $4", "reservation_id"
    ),
    "ProjectQuota.LimitsSet": _quota_json("limits = limits || $4::jsonb", "limits"),
    "ProjectQuota.LimitsCleared": _quota("limits = '{}'::jsonb"),
}

VOLUME_PROJECTIONS: dict[str, Projection | tuple[Projection, ...]] = {
    "Volume.RevertRequested": _set("status = 'reverting'"),
    "Volume.AttachmentReserved": (
        Projection(
            """
            INSERT INTO attachments (id, volume_id, instance_uuid, attach_status, attach_mode,
                version)
            VALUES ($1, $2, $3, 'reserved', $4, $5) ON CONFLICT (id) DO NOTHING
            """,
            lambda e: (
                UUID(e.data["attachment_id"]),
                e.aggregate_id,
                e.data["instance_uuid"],
                e.data["mode"],
                e.version,
            ),
        ),
        _set("status = $4", "status"),
    ),
    "Volume.AttachmentConnected": (
        Projection(
            """
            UPDATE attachments SET attach_status = 'attaching', attached_host = $2,
                mountpoint = $3, attach_mode = $4, connector = $5::jsonb,
                connection_info = $6::jsonb
            WHERE id = $1 AND NOT deleted
            """,
            lambda e: (
                UUID(e.data["attachment_id"]),
                e.data["attached_host"],
                e.data["mountpoint"],
                e.data["mode"],
                json.dumps(e.data["connector"]),
                json.dumps(e.data["connection_info"]),
            ),
        ),
        _set("status = 'attaching', attach_status = 'attaching'"),
    ),
    "Volume.AttachmentCompleted": (
        Projection(
            "UPDATE attachments SET attach_status = 'attached', attach_time = $2 "
            "WHERE id = $1 AND NOT deleted",
            lambda e: (UUID(e.data["attachment_id"]), e.timestamp),
        ),
        _set("status = 'in-use', attach_status = 'attached'"),
    ),
    "Volume.Updated": _update(
        "name = CASE WHEN $4::jsonb ? 'name' THEN $4::jsonb ->> 'name' ELSE name END, "
        "description = CASE WHEN $4::jsonb ? 'description' "
        "THEN $4::jsonb ->> 'description' ELSE description END, "
        "metadata = coalesce($4::jsonb -> 'metadata', metadata)",
        _json_arg("changes"),
    ),
    "Volume.UploadRequested": _set("previous_status = status, status = 'uploading'"),
    "Volume.Uploaded": _set("status = $4", "status"),
    "Volume.UploadFailed": _set("status = $4", "status"),
    "Volume.ReimageRequested": _set("previous_status = status, status = 'downloading'"),
    "Volume.Reimaged": _update(
        "status = $4, bootable = true, image_metadata = $5::jsonb",
        lambda e: (
            e.aggregate_id,
            e.version,
            e.timestamp,
            e.data["status"],
            json.dumps(e.data["image_metadata"]),
        ),
    ),
    "Volume.ReimageFailed": _set("previous_status = status, status = 'error'"),
    "Volume.ImageWritten": _update(
        "bootable = true, image_metadata = $4::jsonb", _json_arg("image_metadata")
    ),
    "Volume.RetypeRequested": _set(
        "previous_status = status, status = 'retyping', multiattach = $4", "new_multiattach"
    ),
    "Volume.Retyped": _set(
        "volume_type_id = $4, volume_type_name = $5, host = coalesce($6, host), "
        "migration_status = CASE WHEN $6::text IS NULL THEN migration_status ELSE 'success' "
        "END, status = coalesce(previous_status, 'available')",
        "new_type_id",
        "new_type_name",
        "host",
    ),
    "Volume.RetypeFailed": _set(
        "multiattach = $4, status = coalesce(previous_status, 'available')", "multiattach"
    ),
    "Volume.EncryptionSet": _set("encryption_key_id = $4", "key_id"),
    "Volume.SourceSet": _set("snapshot_id = $4, source_volid = $5", "snapshot_id", "source_volid"),
    "Volume.Reencrypted": _set("encryption_key_id = $4, migration_status = 'success'", "key_id"),
    "Volume.ReencryptFailed": _set("migration_status = 'error'"),
    "Volume.Reverted": _set("status = 'available'"),
    "Volume.RevertFailed": _set("status = 'error'"),
    "Volume.Reserved": _set("status = 'attaching'"),
    "Volume.Unreserved": _set("status = $4", "status"),
    "Volume.Attached": (
        ATTACHMENT_ADDED,
        _update(
            "status = 'in-use', attach_status = 'attached', admin_metadata = "
            "jsonb_build_object('readonly', 'False') || admin_metadata || $4::jsonb",
            _attached_args,
        ),
    ),
    "Volume.Detached": (
        ATTACHMENTS_REMOVED,
        _update(f"status = $4, attach_status = $5, {_DROP_ATTACHED_MODE}", _detached_args),
    ),
    "Volume.DetachingBegun": _set("status = 'detaching'"),
    "Volume.DetachingRolledBack": _set("status = 'in-use'"),
    "Volume.ReadonlyFlagUpdated": _update(
        "admin_metadata = admin_metadata || $4::jsonb", _readonly_args
    ),
    "Volume.StatusReset": (
        ATTACHMENTS_REMOVED,
        _update(
            f"status = $4, attach_status = $5, {_DROP_ATTACHED_MODE}, migration_status = $7",
            _reset_args,
        ),
    ),
    "Volume.ImageMetadataSet": _update(
        "image_metadata = image_metadata || $4::jsonb", _json_arg("metadata")
    ),
    "Volume.ImageMetadataUnset": _set("image_metadata = image_metadata - $4", "key"),
    "Volume.UnmanageRequested": _set(
        "previous_status = status, status = CASE WHEN status = 'error_managing' "
        "THEN 'error_managing_deleting' ELSE 'unmanaging' END"
    ),
    "Volume.Unmanaged": _set("status = 'deleted', deleted = true, deleted_at = $3"),
    "Volume.UnmanageFailed": _set("status = 'error_unmanaging'"),
    "Volume.MigrationStarted": _set(
        "previous_status = status, migration_status = 'starting', status = CASE "
        "WHEN $4 AND status = 'available' THEN 'maintenance' ELSE status END",
        "lock_volume",
    ),
    "Volume.MigrationCopying": _set("migration_status = 'migrating'"),
    "Volume.MigrationCompleted": _set(
        f"host = $4, migration_status = 'success', {_RESTORE_HELD}", "host"
    ),
    "Volume.MigrationFailed": _set(f"migration_status = 'error', {_RESTORE_HELD}"),
    "Volume.Created": VOLUME_CREATED,
    "Volume.CreateCompleted": _set("status = 'available', host = $4", "host"),
    "Volume.CreateFailed": _set("status = 'error'"),
    "Volume.ExtendRequested": _set("previous_status = status, status = 'extending'"),
    "Volume.Extended": _set("size = $4, status = $5", "new_size_gb", "status"),
    "Volume.ExtendFailed": _set("status = $4", "status"),
    "Volume.BootableSet": _set("bootable = $4", "bootable"),
    "Volume.DeleteRequested": _set("previous_status = status, status = 'deleting'"),
    "Volume.DeleteFailed": _set("status = 'error_deleting'"),
    "Volume.Deleted": _set("status = 'deleted', deleted = true, deleted_at = $3"),
}


def _all_projections() -> dict[str, tuple[Projection, ...]]:
    merged: dict[str, tuple[Projection, ...]] = {}
    for table in (VOLUME_PROJECTIONS, SNAPSHOT_PROJECTIONS, TYPE_PROJECTIONS, QUOTA_PROJECTIONS):
        for name, found in table.items():
            merged[name] = found if isinstance(found, tuple) else (found,)
    return merged


PROJECTIONS = _all_projections()


def _projections_of(name: str) -> tuple[Projection, ...]:
    return PROJECTIONS.get(name, ())


async def apply_batch(
    conn: asyncpg.Connection,
    name: str,
    events: Sequence[ProjectionEvent],
    upto: tuple[int, int],
    *,
    undecodable: Sequence[SetAside] = (),
    stopped: Stopped | None = None,
) -> int:
    """Apply ``events`` and move projection ``name``'s tracking row to ``upto`` in one
    transaction. A batch wholly at or before the tracked position is skipped; inside a batch,
    row versions make already-applied events no-ops. Returns how many events were applied.

    No event stops the projection: if the batch fails in a way a retry will not fix, it is
    applied again event by event (a savepoint each); an event that fails quarantines its
    aggregate (``quarantine``), whose later events are held, and the tracking row moves on.
    Events of aggregates quarantined before are held too, as are those after an
    ``undecodable`` one (an event the caller could not decode). ``stopped`` keeps the
    quarantined aggregates between batches (read from the table when not given).
    """
    try:
        return await _apply(conn, name, events, upto, undecodable, stopped, one_by_one=False)
    except Exception as err:
        if retry_will_fix(err):
            raise
        log.warning(
            "projection batch failed, applying it event by event",
            extra={"consumer": name, "error": describe(err)},
        )
    return await _apply(conn, name, events, upto, undecodable, stopped, one_by_one=True)


async def _apply(
    conn: asyncpg.Connection,
    name: str,
    events: Sequence[ProjectionEvent],
    upto: tuple[int, int],
    undecodable: Sequence[SetAside],
    stopped: Stopped | None,
    *,
    one_by_one: bool,
) -> int:
    cache = stopped if stopped is not None else Stopped()
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT tx_id, position, updated_at FROM tracking WHERE name = $1 FOR UPDATE", name
        )
        if row is not None and (row["tx_id"], row["position"]) >= upto:
            return 0
        since = dict(await cache.refresh(conn, name, row["updated_at"] if row else None))
        for bad in undecodable:
            since[bad.aggregate_id] = min(bad.version, since.get(bad.aggregate_id, bad.version))
        aside = list(undecodable)
        ready = []
        for e in events:
            if not _projections_of(e.name):
                continue
            first = since.get(e.aggregate_id)
            if first is not None and e.version >= first:
                aside.append(SetAside.behind(name, e.aggregate_id, e.version, e.name, first))
            else:
                ready.append(e)
        if one_by_one:
            applied = await _one_by_one(conn, name, ready, since, aside)
        else:
            known = [(projection, e) for e in ready for projection in _projections_of(e.name)]
            for sql, run in groupby(known, key=lambda pair: pair[0].sql):
                await conn.executemany(sql, [projection.args(e) for projection, e in run])
            applied = len(ready)
        recorded = await record(conn, aside)
        stamp = await conn.fetchval(
            """
            INSERT INTO tracking (name, tx_id, position, updated_at) VALUES ($1, $2, $3, now())
            ON CONFLICT (name) DO UPDATE SET tx_id = $2, position = $3, updated_at = now()
            RETURNING updated_at
            """,
            name,
            upto[0],
            upto[1],
        )
        await conn.execute("SELECT pg_notify($1, $2)", PROJECTED_CHANNEL, f"{upto[0]}:{upto[1]}")
    cache.versions, cache.stamp = since, stamp
    log_set_aside(recorded)
    return applied


async def _one_by_one(
    conn: asyncpg.Connection,
    name: str,
    events: Sequence[ProjectionEvent],
    since: dict[UUID, int],
    aside: list[SetAside],
) -> int:
    """Each event in a savepoint of its own: one that fails is set aside with its error, and
    so is every later event of its aggregate; the others are applied."""
    applied = 0
    for e in events:
        first = since.get(e.aggregate_id)
        if first is not None and e.version >= first:
            aside.append(SetAside.behind(name, e.aggregate_id, e.version, e.name, first))
            continue
        try:
            async with conn.transaction():
                for projection in _projections_of(e.name):
                    await conn.execute(projection.sql, *projection.args(e))
        except Exception as err:
            if retry_will_fix(err):
                raise
            since[e.aggregate_id] = e.version
            aside.append(SetAside.failed(name, e.aggregate_id, e.version, e.name, err))
            continue
        applied += 1
    return applied
