"""One aggregate's fold kept between events (a volume's or a snapshot's), so the billing
consumer handles the next event in O(1): the aggregate as of the last event it saw, the
open interval, ``launched_at``.

``step`` applies exactly the next event (version + 1) and says what changed in the ledger
(an interval closed, one opened) and which notifications the event stands for; anything
else (a gap, a redelivery of an older event, a fresh process) is the caller's slow path:
the whole fold from the stored events, after which ``of_events`` starts a new cursor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cinderblock.domain.snapshot import Snapshot
from cinderblock.usage.ledger import Interval, advance, billing_state
from cinderblock.usage.notifications import (
    Notification,
    event_name,
    snapshot_payload,
    snapshot_step_notifications,
    step_notifications,
    volume_payload,
    wants_notification,
)


@dataclass
class Step:
    closed: Interval | None  # the interval that ended at this event
    opened: Interval | None  # the interval that began at this event
    notifications: list[Notification]

    @property
    def ledger_changed(self) -> bool:
        return self.closed is not None or self.opened is not None


@dataclass
class VolumeCursor:
    """The kept fold of one billed aggregate: a volume, or a snapshot (the first event
    decides which: ``volume`` is then the Snapshot aggregate)."""

    volume_id: str
    volume: Any = None  # the aggregate after ``version``
    version: int = 0
    open: Interval | None = None
    launched_at: datetime | None = None

    @classmethod
    def of_events(cls, volume_id: str, events: Iterable[Any]) -> VolumeCursor:
        cursor = cls(volume_id)
        for event in events:
            cursor._apply(event)
        return cursor

    @property
    def is_snapshot(self) -> bool:
        return isinstance(self.volume, Snapshot)

    def step(self, event: Any, *, default_host: str, default_zone: str | None = None) -> Step:
        """Apply the next event (its version must be ``version + 1``). ``default_zone``: a
        snapshot's zone when it does not record its own (stored before it was kept)."""
        if event.originator_version != self.version + 1:
            raise ValueError(f"cursor at {self.version}, event {event.originator_version}")
        before = None
        wanted = wants_notification(event)
        snapshot = isinstance(event, Snapshot.Event)
        if wanted and self.volume is not None:
            before = (
                snapshot_payload(self.volume, availability_zone=default_zone)
                if snapshot
                else volume_payload(self.volume, launched_at=self.launched_at, now=event.timestamp)
            )
        previous = self.open
        closed, opened = self._apply(event)
        notes: list[Notification] = []
        if wanted and snapshot:
            notes = snapshot_step_notifications(
                before, self.volume, event, availability_zone=default_zone, host=default_host
            )
        elif wanted:
            notes = step_notifications(
                before, self.volume, event, self.launched_at, default_host=default_host
            )
        return Step(closed, opened if opened is not previous else None, notes)

    def fold(self, event: Any) -> tuple[Interval | None, Interval | None]:
        """Apply the next event without its notifications (replay's rebuild of the ledger,
        which checks the version itself): (the interval it closed, the open interval)."""
        return self._apply(event)

    def _apply(self, event: Any) -> tuple[Interval | None, Interval | None]:
        self.volume = event.mutate(self.volume)
        self.version = event.originator_version
        if event_name(event) == "Volume.CreateCompleted":
            self.launched_at = event.timestamp
        closed, self.open = advance(
            self.volume_id,
            self.open,
            billing_state(self.volume),
            event.originator_version,
            event.timestamp,
        )
        return closed, self.open
