"""A volume's life driven through the domain's own commands, each event re-stamped at a
chosen time (the ledger is exact to event timestamps, so tests pick them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cinderblock.domain.volume import Volume

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(event: Any, when: datetime) -> Any:
    return type(event)(**{**vars(event), "timestamp": when})


class Life:
    """Run commands on one volume; ``step(when, command)`` stamps the events it records."""

    def __init__(self, size_gb: int = 10, type_id: str = "type-a", project: str = "p1") -> None:
        self.id = uuid.uuid4()
        self.volume = Volume.create(
            self.id,
            project_id=project,
            user_id="u1",
            name="vol",
            description=None,
            size_gb=size_gb,
            availability_zone="nova",
            volume_type_id=type_id,
            volume_type_name=type_id,
            metadata={"k": "v"},
            bootable=False,
            multiattach=False,
        )
        self.events: list[Any] = [at(e, T0) for e in self.volume.collect_events()]

    def step(self, when: datetime, command: Any) -> list[Any]:
        command(self.volume)
        recorded = [at(e, when) for e in self.volume.collect_events()]
        self.events.extend(recorded)
        return recorded

    @property
    def version(self) -> int:
        return int(self.volume.version)


def canonical(life: Life) -> Life:
    """create at T0 (placed at T0+1h), extend 10→20 completed at T0+3h, retype a→b completed
    at T0+5h, reset to error at T0+7h, delete requested at T0+9h, deleted at T0+10h."""
    life.step(T0 + HOUR, lambda v: v.complete_create("node@file-a#pool0"))
    life.step(
        T0 + 2 * HOUR,
        lambda v: v.request_extend(20, in_use_allowed=False, reservation_id="r1"),
    )
    life.step(T0 + 3 * HOUR, lambda v: v.complete_extend(life.version))
    life.step(
        T0 + 4 * HOUR,
        lambda v: v.request_retype(
            "type-b",
            "type-b",
            new_multiattach=False,
            migration_policy="never",
            reservation_id="r2",
        ),
    )
    life.step(T0 + 5 * HOUR, lambda v: v.complete_retype(life.version, None))
    life.step(
        T0 + 7 * HOUR,
        lambda v: v.reset_status(
            status="error", attach_status=None, migration_status=None, migration_given=False
        ),
    )
    life.step(T0 + 9 * HOUR, lambda v: v.request_delete())
    life.step(T0 + 10 * HOUR, lambda v: v.complete_delete())
    return life
