"""The billing consumer's kept fold: stepping a volume's events one at a time gives exactly
the ledger and the notifications of folding its whole story at each event (what the slow
path and replay's ledger do)."""

from __future__ import annotations

from typing import Any

import pytest

from cinderblock.usage.cursor import VolumeCursor
from cinderblock.usage.ledger import Interval, volume_intervals
from cinderblock.usage.notifications import volume_notifications
from tests.helpers.usage import HOUR, T0, Life, canonical


def _attached_life() -> Life:
    """Bootable, metadata, attach, detach, update, extend: events with and without
    notifications, with and without ledger changes."""
    life = Life()
    life.step(T0 + HOUR, lambda v: v.complete_create("node@file-a#pool0"))
    life.step(T0 + 2 * HOUR, lambda v: v.set_bootable(True))
    life.step(T0 + 3 * HOUR, lambda v: v.reserve())
    life.step(
        T0 + 4 * HOUR,
        lambda v: v.attach(
            "a-1", mountpoint="/dev/vdb", mode="rw", instance_uuid="i-1", host_name=None
        ),
    )
    life.step(T0 + 5 * HOUR, lambda v: v.update({"name": "renamed"}))
    life.step(T0 + 6 * HOUR, lambda v: v.detach(None))
    life.step(
        T0 + 7 * HOUR,
        lambda v: v.request_extend(12, in_use_allowed=False, reservation_id="r9"),
    )
    life.step(T0 + 8 * HOUR, lambda v: v.complete_extend(life.version))
    return life


def _replayed(intervals_by_step: list[tuple[Interval | None, Interval | None]]) -> list[Any]:
    """The ledger rows the steps leave: inserts, with ``ended_at`` set by later closes."""
    rows: dict[int, Interval] = {}
    for closed, opened in intervals_by_step:
        if closed is not None:
            rows[closed.start_version] = closed
        if opened is not None:
            rows[opened.start_version] = opened
    return [rows[k] for k in sorted(rows)]


@pytest.mark.parametrize(
    "make", [lambda: canonical(Life()), _attached_life], ids=["canonical", "attached"]
)
def test_stepping_equals_folding_the_whole_story(make: Any) -> None:
    life = make()
    cursor = VolumeCursor(str(life.id))
    changes = []
    for event in life.events:
        step = cursor.step(event, default_host="api1")
        changes.append((step.closed, step.opened))
        whole = volume_notifications(life.events, event.originator_version, default_host="api1")
        assert step.notifications == whole, event
    assert _replayed(changes) == volume_intervals(str(life.id), life.events)


def test_a_cursor_built_from_events_continues_where_they_end() -> None:
    life = canonical(Life())
    head, middle, tail = life.events[:3], life.events[3:6], life.events[6:]
    cursor = VolumeCursor.of_events(str(life.id), head)
    assert cursor.version == 3
    for event in middle:
        cursor.step(event, default_host="api1")
    assert cursor.open == volume_intervals(str(life.id), head + middle)[-1]
    for event in tail:
        cursor.step(event, default_host="api1")
    assert (cursor.version, cursor.open) == (life.version, None)  # deleted: nothing open


def test_a_gap_is_refused() -> None:
    life = canonical(Life())
    cursor = VolumeCursor.of_events(str(life.id), life.events[:2])
    with pytest.raises(ValueError, match="cursor at 2"):
        cursor.step(life.events[3], default_host="api1")
