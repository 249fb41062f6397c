"""The usage ledger as a pure fold: a volume's or a snapshot's stored events → usage
intervals.

Each event is applied to its aggregate (Volume or Snapshot) exactly as the event store
replays it; the aggregate's billing state after the event (project, type id, size, usage
class) is compared with the open interval's, and a change closes that interval at the
event's timestamp and opens the next one. An aggregate that is gone (deleted, unmanaged)
has no open interval. An aggregate's ledger depends on its own events only.

A snapshot is billed at its size (``volume_size``, the volume's size when it was taken)
under the type it was taken with (``""`` for a snapshot stored before the type was kept),
with the same usage classes as a volume: ``creating`` is pending (billed from
``CreateCompleted``), ``error``/``error_deleting`` are not billed, ``deleting`` keeps the
class it had before the request, ``Deleted`` ends it.

Usage classes (docs/decisions.md, "Usage ledger"):

- ``pending``: ``creating``/``managing`` — nothing is on a backend yet (Cinder's
  ``launched_at`` is unset); not billed.
- ``active``: every other non-error status (available, in-use, attaching, extending,
  retyping, maintenance, …); billed.
- ``error``: every ``error*`` status; not billed (the volume stops accruing, as it would
  in Ceilometer/Gnocchi billing of failed volumes).
- ``deleting``/``unmanaging``/``error_managing_deleting`` keep the class the volume had
  before the request: a deleting volume still holds its data until ``Deleted``, a deleting
  error volume does not start accruing.
- ``deleted`` (``Volume.Deleted``, ``Volume.Unmanaged``): the interval ends, nothing opens.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.status import Status


class Resource(StrEnum):
    """What an interval bills (the report keeps the two apart: Ceilometer's ``volume.size``
    and ``snapshot.size`` meters)."""

    VOLUME = "volume"
    SNAPSHOT = "snapshot"


class UsageClass(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    ERROR = "error"


BILLED = frozenset({UsageClass.ACTIVE})

_PENDING = frozenset({Status.CREATING, Status.MANAGING})
_KEEPS_PREVIOUS = frozenset({Status.DELETING, Status.UNMANAGING, Status.ERROR_MANAGING_DELETING})


def usage_class(status: str, previous_status: str | None = None) -> UsageClass | None:
    """The usage class of a volume status; None when the volume is gone."""
    if status == Status.DELETED:
        return None
    if status in _KEEPS_PREVIOUS:
        if previous_status is None or previous_status in _KEEPS_PREVIOUS:
            return UsageClass.ACTIVE
        return usage_class(previous_status)
    if status in _PENDING:
        return UsageClass.PENDING
    if status.startswith("error"):
        return UsageClass.ERROR
    return UsageClass.ACTIVE


@dataclass(frozen=True)
class UsageState:
    """What billing needs of a volume (or a snapshot) at one moment. ``resource`` and
    ``snapshot_volume_id`` (a snapshot's volume) never change over an aggregate's life."""

    project_id: str
    volume_type_id: str
    size_gb: int
    usage_class: UsageClass
    resource: Resource = Resource.VOLUME
    snapshot_volume_id: str | None = None


@dataclass(frozen=True)
class Interval:
    """One stretch of a volume's (or a snapshot's) life with constant type, size and usage
    class. ``volume_id`` is the billed aggregate: a snapshot's id when ``resource`` is
    ``snapshot`` (its volume is ``snapshot_volume_id``). ``start_version`` is the aggregate
    version of the event that opened it; ``ended_at`` is None while it is open."""

    volume_id: str
    project_id: str
    volume_type_id: str
    size_gb: int
    usage_class: UsageClass
    start_version: int
    started_at: datetime
    ended_at: datetime | None = None
    resource: Resource = Resource.VOLUME
    snapshot_volume_id: str | None = None

    @property
    def state(self) -> UsageState:
        return UsageState(
            self.project_id,
            self.volume_type_id,
            self.size_gb,
            self.usage_class,
            self.resource,
            self.snapshot_volume_id,
        )

    def gib_hours(self, since: datetime, until: datetime) -> Decimal:
        """GiB·hours of this interval inside [since, until) (0 when not billed); an open
        interval runs to ``until``."""
        if self.usage_class not in BILLED:
            return Decimal(0)
        start = max(self.started_at, since)
        end = min(self.ended_at or until, until)
        if end <= start:
            return Decimal(0)
        seconds = Decimal((end - start) // _MICROSECOND) / Decimal(1_000_000)
        return self.size_gb * seconds / Decimal(3600)


_MICROSECOND = datetime.resolution


# usage_class by (status, previous status): a handful of pairs, asked at every event.
_CLASSES: dict[tuple[str, str | None], UsageClass | None] = {}


def _class_of(status: Any, previous: Any) -> UsageClass | None:
    key = (
        str(getattr(status, "value", status)),
        None if previous is None else str(getattr(previous, "value", previous)),
    )
    try:
        return _CLASSES[key]
    except KeyError:
        cls = _CLASSES[key] = usage_class(*key)
        return cls


def volume_state(volume: Any) -> UsageState | None:
    """The billing state of a Volume aggregate (None when gone)."""
    cls = _class_of(volume.status, volume.previous_status)
    if cls is None:
        return None
    return UsageState(volume.project_id, volume.volume_type_id, volume.size_gb, cls)


def snapshot_state(snapshot: Any) -> UsageState | None:
    """The billing state of a Snapshot aggregate (None when gone)."""
    cls = _class_of(snapshot.status, getattr(snapshot, "previous_status", None))
    if cls is None:
        return None
    return UsageState(
        snapshot.project_id,
        snapshot.volume_type_id or "",
        snapshot.volume_size,
        cls,
        Resource.SNAPSHOT,
        snapshot.volume_id,
    )


def billing_state(aggregate: Any) -> UsageState | None:
    """The billing state of a Volume or a Snapshot aggregate (None when gone)."""
    if isinstance(aggregate, Snapshot):
        return snapshot_state(aggregate)
    return volume_state(aggregate)


def advance(
    volume_id: str,
    open_interval: Interval | None,
    state: UsageState | None,
    version: int,
    at: datetime,
) -> tuple[Interval | None, Interval | None]:
    """One step of the fold: (the interval closed at ``at`` or None, the open interval)."""
    if (  # state == open_interval.state, field by field (the fold asks at every event)
        open_interval is not None
        and state is not None
        and state.usage_class == open_interval.usage_class
        and state.size_gb == open_interval.size_gb
        and state.volume_type_id == open_interval.volume_type_id
        and state.project_id == open_interval.project_id
    ):
        return None, open_interval
    closed = None if open_interval is None else replace(open_interval, ended_at=at)
    if state is None:
        return closed, None
    opened = Interval(
        volume_id,
        state.project_id,
        state.volume_type_id,
        state.size_gb,
        state.usage_class,
        version,
        at,
        None,
        state.resource,
        state.snapshot_volume_id,
    )
    return closed, opened


def fold_states(
    volume_id: str, steps: Iterable[tuple[int, datetime, UsageState | None]]
) -> list[Interval]:
    """Every interval of one aggregate from its (version, timestamp, state after) steps."""
    intervals: list[Interval] = []
    current: Interval | None = None
    for version, at, state in steps:
        closed, current = advance(volume_id, current, state, version, at)
        if closed is not None:
            intervals.append(closed)
    if current is not None:
        intervals.append(current)
    return intervals


def volume_steps(events: Iterable[Any]) -> Iterator[tuple[int, datetime, UsageState | None]]:
    """(version, timestamp, state after) for each of one aggregate's (a volume's or a
    snapshot's) domain events in version order, the aggregate evolved by the events' own
    ``mutate`` (replay, never the rules)."""
    aggregate: Any = None
    for event in events:
        aggregate = event.mutate(aggregate)
        yield event.originator_version, event.timestamp, billing_state(aggregate)


def volume_intervals(volume_id: str, events: Iterable[Any]) -> list[Interval]:
    """The ledger of one volume (or snapshot, by its id): the fold of its stored events."""
    return fold_states(volume_id, volume_steps(events))


def gib_hours(intervals: Iterable[Interval], since: datetime, until: datetime) -> Decimal:
    return sum((i.gib_hours(since, until) for i in intervals), Decimal(0))
