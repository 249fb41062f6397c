"""The answer to a create shows the volume as the create left it (``creating``, as Cinder
answers), even when the saga already finished it before the answer was built."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import asyncpg

from cinderblock.api import written
from cinderblock.store.eventstore import AsyncEventStore, Position
from cinderblock.store.volumes import Caller, Volumes


async def test_the_create_answer_is_the_state_the_create_left(pool: asyncpg.Pool) -> None:
    volumes = Volumes(AsyncEventStore(pool))
    vid = uuid.uuid4()
    at = await volumes.create_volume(
        Caller("u", uuid.uuid4().hex),
        vid,
        meta={},
        name="fast",
        description=None,
        size_gb=1,
        metadata={},
        bootable=False,
        multiattach=False,
    )
    await volumes.complete_create(str(vid), "h@b#p", meta={})  # the saga was quicker

    async def caught_up(_: Position, **__: Any) -> bool:
        return True

    deps: Any = SimpleNamespace(pool=pool, read_your_write=caught_up)
    row = await written.created_volume_row(deps, at, str(vid))
    assert (row["id"], row["status"], row["name"], row["host"]) == (
        str(vid),
        "creating",
        "fast",
        None,
    )
