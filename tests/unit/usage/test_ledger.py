"""The usage ledger's fold and its GiB·hour arithmetic, on events the domain records."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from cinderblock.usage.ledger import (
    Interval,
    UsageClass,
    gib_hours,
    usage_class,
    volume_intervals,
)
from tests.helpers.usage import HOUR, T0, Life, canonical

pytestmark = pytest.mark.unit


def _shape(intervals: list[Interval]) -> list[tuple[object, ...]]:
    return [
        (i.usage_class.value, i.size_gb, i.volume_type_id, i.started_at, i.ended_at)
        for i in intervals
    ]


def test_an_interval_starts_at_each_change_of_type_size_or_class() -> None:
    life = canonical(Life())
    assert _shape(volume_intervals(str(life.id), life.events)) == [
        ("pending", 10, "type-a", T0, T0 + HOUR),
        ("active", 10, "type-a", T0 + HOUR, T0 + 3 * HOUR),  # extend counts from completion
        ("active", 20, "type-a", T0 + 3 * HOUR, T0 + 5 * HOUR),
        ("active", 20, "type-b", T0 + 5 * HOUR, T0 + 7 * HOUR),
        ("error", 20, "type-b", T0 + 7 * HOUR, T0 + 10 * HOUR),  # deleting keeps error
    ]


def test_gib_hours_over_the_whole_life() -> None:
    life = canonical(Life())
    intervals = volume_intervals(str(life.id), life.events)
    # 10 GiB x 2 h + 20 GiB x 2 h (type a) + 20 GiB x 2 h (type b); pending and error: 0
    assert gib_hours(intervals, T0, T0 + 24 * HOUR) == Decimal(100)


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (T0, T0 + HOUR, Decimal(0)),  # only pending
        (T0 + 2 * HOUR, T0 + 4 * HOUR, Decimal(30)),  # 10 x 1 + 20 x 1
        (T0 + 150 * HOUR / 60, T0 + 195 * HOUR / 60, Decimal(10)),  # 10 x 0.5 + 20 x 0.25
        (T0 + 6 * HOUR, T0 + 8 * HOUR, Decimal(20)),  # error from 7h does not accrue
        (T0 + 10 * HOUR, T0 + 20 * HOUR, Decimal(0)),  # deleted
    ],
)
def test_windows_clip_intervals(since, until, expected) -> None:  # type: ignore[no-untyped-def]
    life = canonical(Life())
    intervals = volume_intervals(str(life.id), life.events)
    assert gib_hours(intervals, since, until) == expected


def test_microseconds_count_exactly() -> None:
    life = Life(size_gb=3)
    life.step(T0 + timedelta(microseconds=1), lambda v: v.complete_create("h@b#p"))
    intervals = volume_intervals(str(life.id), life.events)
    until = T0 + HOUR + timedelta(microseconds=1)
    assert gib_hours(intervals, T0, until) == Decimal(3)


def test_an_open_interval_accrues_up_to_the_window_end() -> None:
    life = Life(size_gb=5)
    life.step(T0 + HOUR, lambda v: v.complete_create("h@b#p"))
    (pending, active) = volume_intervals(str(life.id), life.events)
    assert active.ended_at is None
    assert gib_hours([pending, active], T0, T0 + 3 * HOUR) == Decimal(10)


def test_a_failed_create_never_accrues_and_deleting_it_changes_nothing() -> None:
    life = Life()
    life.step(T0 + HOUR, lambda v: v.fail_create("no valid backend"))
    life.step(T0 + 2 * HOUR, lambda v: v.request_delete())
    assert _shape(volume_intervals(str(life.id), life.events)) == [
        ("pending", 10, "type-a", T0, T0 + HOUR),
        ("error", 10, "type-a", T0 + HOUR, T0 + 2 * HOUR),
    ]


def test_a_deleting_volume_accrues_until_deleted_and_unmanage_ends_it_too() -> None:
    deleted = Life()
    deleted.step(T0 + HOUR, lambda v: v.complete_create("h@b#p"))
    deleted.step(T0 + 2 * HOUR, lambda v: v.request_delete())
    deleted.step(T0 + 4 * HOUR, lambda v: v.complete_delete())
    unmanaged = Life()
    unmanaged.step(T0 + HOUR, lambda v: v.complete_create("h@b#p"))
    unmanaged.step(T0 + 2 * HOUR, lambda v: v.request_unmanage())
    unmanaged.step(T0 + 4 * HOUR, lambda v: v.complete_unmanage())
    for life in (deleted, unmanaged):
        intervals = volume_intervals(str(life.id), life.events)
        assert intervals[-1].ended_at == T0 + 4 * HOUR
        assert gib_hours(intervals, T0, T0 + 9 * HOUR) == Decimal(30)


def test_a_failed_extend_into_error_stops_accrual_and_a_reset_resumes_it() -> None:
    life = Life(size_gb=1)
    life.step(T0 + HOUR, lambda v: v.complete_create("h@b#p"))
    life.step(T0 + HOUR, lambda v: v.request_extend(2, in_use_allowed=False, reservation_id="r"))
    life.step(T0 + 2 * HOUR, lambda v: v.fail_extend(life.version, "boom", restore=False))
    life.step(
        T0 + 3 * HOUR,
        lambda v: v.reset_status(
            status="available", attach_status=None, migration_status=None, migration_given=False
        ),
    )
    intervals = volume_intervals(str(life.id), life.events)
    assert [i.usage_class for i in intervals][-2:] == [UsageClass.ERROR, UsageClass.ACTIVE]
    assert gib_hours(intervals, T0, T0 + 4 * HOUR) == Decimal(2)


@pytest.mark.parametrize(
    ("status", "previous", "expected"),
    [
        ("creating", None, UsageClass.PENDING),
        ("available", None, UsageClass.ACTIVE),
        ("in-use", None, UsageClass.ACTIVE),
        ("extending", None, UsageClass.ACTIVE),
        ("maintenance", None, UsageClass.ACTIVE),
        ("error_extending", None, UsageClass.ERROR),
        ("error_deleting", None, UsageClass.ERROR),
        ("deleting", "error", UsageClass.ERROR),
        ("deleting", "available", UsageClass.ACTIVE),
        ("deleting", "creating", UsageClass.PENDING),
        ("unmanaging", "in-use", UsageClass.ACTIVE),
        ("deleted", None, None),
    ],
)
def test_usage_classes(status: str, previous: str | None, expected: UsageClass | None) -> None:
    assert usage_class(status, previous) == expected


def test_report_windows() -> None:
    from datetime import UTC, datetime

    from cinderblock.usage.report import parse_timestamp, window

    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert window(None, None, now) == (datetime(2026, 2, 1, tzinfo=UTC), now)
    assert window(None, "2026-03-05T12:00:00Z", now)[0] == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_timestamp("2026-03-01T02:00:00+02:00") == now
    assert parse_timestamp("2026-03-01") == now
    for since, until in (("nope", None), (None, "2026-13-01"), ("2026-03-02", "2026-03-01")):
        with pytest.raises(ValueError):  # noqa: PT011
            window(since, until, now)


def test_report_body_totals_per_volume_type_and_project() -> None:
    from datetime import UTC, datetime

    from cinderblock.usage.report import usage_body
    from cinderblock.usage.store import UsageRow

    rows = [
        UsageRow("p1", "v1", "a", Decimal(2), Decimal("2.0000004")),
        UsageRow("p1", "v1", "b", Decimal(1), Decimal(3)),
        UsageRow("p2", "v2", "a", Decimal(1), Decimal("0.5")),
    ]
    when = datetime(2026, 3, 1, tzinfo=UTC)
    body = usage_body(rows, project_id=None, since=when, until=when)["usage"]
    assert body["total_gib_hours"] == 5.5
    assert body["snapshots"] == []
    volumes_only = {"snapshot_gib_hours": 0.0}
    assert body["volume_types"] == [
        {"volume_type_id": "a", "gib_hours": 2.5, "volume_gib_hours": 2.5} | volumes_only,
        {"volume_type_id": "b", "gib_hours": 3.0, "volume_gib_hours": 3.0} | volumes_only,
    ]
    assert body["projects"] == [
        {"project_id": "p1", "gib_hours": 5.0, "volume_gib_hours": 5.0} | volumes_only,
        {"project_id": "p2", "gib_hours": 0.5, "volume_gib_hours": 0.5} | volumes_only,
    ]
    assert body["volumes"][0]["gib_hours"] == 2.0
