"""Volumes and stored rows for tests that write the event log directly (no command
service): a new volume's fields, and pending events appended as raw rows."""

from __future__ import annotations

import uuid

import asyncpg

from cinderblock.domain.volume import Volume
from cinderblock.store.mapping import make_mapper

FIELDS = dict(
    user_id="u",
    name="n",
    description=None,
    size_gb=1,
    availability_zone="nova",
    volume_type_id="t",
    volume_type_name="__DEFAULT__",
    metadata={},
    bootable=False,
    multiattach=False,
)


def new_volume(project: str = "p", **fields: object) -> Volume:
    """A new volume of ``project`` with ``FIELDS``, some replaced by ``fields``."""
    return Volume.create(uuid.uuid4(), project_id=project, **{**FIELDS, **fields})


async def append_raw(
    pool: asyncpg.Pool, volume: Volume, replaced: dict[int, bytes] | None = None
) -> None:
    """Append ``volume``'s pending events as stored rows, some states ``replaced`` (what a
    bug or an old writer could have left in the log), bypassing the store."""
    mapper = make_mapper()
    stored = [mapper.to_stored_event(e) for e in volume.collect_events()]
    await pool.executemany(
        "INSERT INTO events (originator_id, originator_version, topic, state) "
        "VALUES ($1, $2, $3, $4)",
        [
            (
                s.originator_id,
                s.originator_version,
                s.topic,
                (replaced or {}).get(s.originator_version, s.state),
            )
            for s in stored
        ],
    )
