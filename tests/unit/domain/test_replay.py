"""Replay: events collected from live commands rebuild the same aggregate, and replay runs
only the evolve methods, never the rules (decide/evolve split, STYLE §3)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from cinderblock.domain.quota import ProjectQuota, volume_deltas
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import (
    HOST,
    PROJECT,
    VOLUME_ID,
    recorded,
    replay,
    state,
    volume_fields,
)

pytestmark = pytest.mark.unit

Command = Callable[[Volume], Any]


def complete(v: Volume) -> Any:
    return v.complete_create(HOST)


def extend_to(size_gb: int, reservation_id: str = "res-1") -> Command:
    return lambda v: v.request_extend(size_gb, in_use_allowed=False, reservation_id=reservation_id)


def complete_extend(v: Volume) -> Any:
    return v.complete_extend(v.pending_extend["request_version"])  # type: ignore[index]


def fail_extend(*, restore: bool) -> Command:
    return lambda v: v.fail_extend(
        v.pending_extend["request_version"],  # type: ignore[index]
        "failed",
        restore=restore,
    )


SCENARIOS: dict[str, list[Command]] = {
    "created": [],
    "create completed": [complete],
    "create failed": [lambda v: v.fail_create("no valid backend")],
    "never placed, deleted": [lambda v: v.request_delete()],
    "create failed, deleted": [lambda v: v.fail_create("x"), lambda v: v.request_delete()],
    "extend requested": [complete, extend_to(20)],
    "extended": [complete, extend_to(20), complete_extend],
    "extended twice": [
        complete,
        extend_to(20),
        complete_extend,
        extend_to(30, "res-2"),
        complete_extend,
    ],
    "extend, no capacity": [complete, extend_to(20), fail_extend(restore=True)],
    "extend failed": [complete, extend_to(20), fail_extend(restore=False)],
    "extend failed, deleted": [
        complete,
        extend_to(20),
        fail_extend(restore=False),
        lambda v: v.request_delete(),
        lambda v: v.complete_delete(),
    ],
    "bootable toggled": [
        complete,
        lambda v: v.set_bootable(True),
        lambda v: v.set_bootable(False),
        lambda v: v.set_bootable(True),
    ],
    "delete requested": [complete, lambda v: v.request_delete()],
    "delete failed, forced, deleted": [
        complete,
        lambda v: v.request_delete(),
        lambda v: v.fail_delete("backend exploded"),
        lambda v: v.request_delete(force=True),
        lambda v: v.complete_delete(),
    ],
    "extending, force deleted": [
        complete,
        extend_to(20),
        lambda v: v.request_delete(force=True),
        lambda v: v.complete_delete(),
    ],
}


def live(commands: list[Command]) -> tuple[Volume, list[Any]]:
    """Run ``commands`` on a new volume; return it and every event it recorded."""
    volume = Volume.create(VOLUME_ID, **volume_fields())
    for command in commands:
        command(volume)
    return volume, volume.collect_events()


# -- same state -------------------------------------------------------------------------------


@pytest.mark.parametrize("commands", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_replay_rebuilds_the_live_volume(commands: list[Command]) -> None:
    volume, events = live(commands)

    rebuilt = replay(events)

    assert type(rebuilt) is Volume
    assert state(rebuilt) == state(volume)
    assert rebuilt.version == volume.version == len(events)


def test_replay_rebuilds_each_intermediate_state() -> None:
    volume = Volume.create(VOLUME_ID, **volume_fields())
    states = [state(volume)]
    for command in SCENARIOS["delete failed, forced, deleted"]:
        command(volume)
        states.append(state(volume))
    events = volume.collect_events()
    # each command here records exactly one event
    assert len(events) == len(states)

    for n in range(1, len(events) + 1):
        assert state(replay(events[:n])) == states[n - 1]


def test_replayed_pending_extend_keeps_the_request_version() -> None:
    _, events = live([complete, extend_to(20)])

    rebuilt = replay(events)

    assert rebuilt.pending_extend == {
        "new_size_gb": 20,
        "reservation_id": "res-1",
        "request_version": events[-1].originator_version,
    }


def test_replayed_volume_decides_as_the_live_one() -> None:
    volume, events = live([complete, extend_to(20)])
    rebuilt = replay(events)
    version = events[-1].originator_version

    assert rebuilt.complete_extend(version) == volume.complete_extend(version) == "res-1"

    assert recorded(rebuilt.collect_events()) == recorded(volume.collect_events())
    assert state(rebuilt) | {"_modified_on": None} == state(volume) | {"_modified_on": None}


def test_replay_keeps_created_metadata_apart_from_the_event() -> None:
    _, events = live([complete])

    rebuilt = replay(events)
    rebuilt.metadata["changed"] = "yes"

    assert events[0].metadata == {"purpose": "test"}


# -- rules are not re-run ---------------------------------------------------------------------


def refuse(*_: Any, **__: Any) -> Any:
    pytest.fail("replay ran a decision")


@pytest.mark.parametrize("commands", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_replay_runs_no_decision(commands: list[Command], monkeypatch: pytest.MonkeyPatch) -> None:
    volume, events = live(commands)
    for name in (
        "create",
        "complete_create",
        "fail_create",
        "request_extend",
        "extend_pending_for",
        "complete_extend",
        "fail_extend",
        "set_bootable",
        "request_delete",
        "complete_delete",
        "fail_delete",
        "_require_status",
        "_status_after_work",
    ):
        monkeypatch.setattr(Volume, name, refuse)

    assert state(replay(events)) == state(volume)


def at(version: int, event_class: type, **fields: Any) -> Any:
    return event_class(
        originator_id=VOLUME_ID,
        originator_version=version,
        timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        **fields,
    )


def test_replay_accepts_a_created_event_todays_rules_refuse() -> None:
    _, events = live([])
    stored = dataclasses.replace(events[0], size_gb=0)

    rebuilt = replay([stored])

    assert rebuilt.size_gb == 0
    assert rebuilt.status is Status.CREATING


def test_replay_accepts_an_extend_todays_rules_refuse() -> None:
    _, events = live([complete])
    stored = at(
        3,
        Volume.ExtendRequested,
        new_size_gb=5,
        previous_status="available",
        reservation_id="res-1",
    )

    rebuilt = replay([*events, stored])

    assert rebuilt.status is Status.EXTENDING
    assert rebuilt.pending_extend == {
        "new_size_gb": 5,
        "reservation_id": "res-1",
        "request_version": 3,
    }


def test_replay_accepts_a_delete_todays_rules_refuse() -> None:
    _, events = live([complete, extend_to(20)])
    stored = at(4, Volume.DeleteRequested, previous_status="extending", forced=False)

    rebuilt = replay([*events, stored])

    assert rebuilt.status is Status.DELETING
    assert rebuilt.previous_status is Status.EXTENDING


def test_replay_takes_the_status_the_event_recorded() -> None:
    """Extended's status was decided from the attachments when it happened; replay does
    not recompute it."""
    _, events = live([complete, extend_to(20)])
    stored = at(4, Volume.Extended, new_size_gb=20, status="in-use", previous_size_gb=10)

    rebuilt = replay([*events, stored])

    assert rebuilt.attachment_ids == []
    assert rebuilt.status is Status.IN_USE
    assert rebuilt.size_gb == 20


# -- quota ------------------------------------------------------------------------------------


def quota_history() -> tuple[ProjectQuota, list[Any]]:
    quota = ProjectQuota.start(PROJECT)
    limits = {"volumes": 10, "gigabytes": 100}
    quota.consume(volume_deltas(10, "lvm", count=1), limits, size_gb=10, reason="create v1")
    quota.consume(volume_deltas(20, "ssd", count=1), limits, size_gb=20, reason="create v2")
    quota.reserve("res-1", volume_deltas(5, "lvm", count=0), limits, size_gb=15)
    quota.reserve("res-2", volume_deltas(7, "ssd", count=0), limits, size_gb=27)
    quota.commit("res-1")
    quota.reserve("res-3", volume_deltas(1, "lvm", count=0), limits, size_gb=16)
    quota.release("res-2")
    quota.release_usage(volume_deltas(20, "ssd", count=1), reason="delete v2")
    return quota, quota.collect_events()


def test_quota_replay_rebuilds_usage_and_reservations() -> None:
    quota, events = quota_history()

    rebuilt = replay(events)

    assert type(rebuilt) is ProjectQuota
    assert state(rebuilt) == state(quota)
    assert rebuilt.in_use == {
        "gigabytes": 15,
        "gigabytes_lvm": 15,
        "volumes": 1,
        "volumes_lvm": 1,
        "gigabytes_ssd": 0,
        "volumes_ssd": 0,
    }
    assert rebuilt.reservations == {"res-3": {"gigabytes": 1, "gigabytes_lvm": 1}}
    assert rebuilt.usage("gigabytes") == 16


def test_quota_replay_runs_no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    quota, events = quota_history()
    for name in ("check", "consume", "reserve", "commit", "release", "release_usage", "start"):
        monkeypatch.setattr(ProjectQuota, name, refuse)

    assert state(replay(events)) == state(quota)
