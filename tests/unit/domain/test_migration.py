"""os-migrate_volume (spec §3.12, §6.3): start_migration, then the migrate saga's
mark_migration_copying / complete_migration / fail_migration, its decision
migration_to_run, and backend_of."""

from __future__ import annotations

from typing import Any

import pytest

from cinderblock.domain.errors import InvalidVolumeError, StaleCommandError
from cinderblock.domain.migration import MIGRATE_REFUSED, backend_of
from cinderblock.domain.sagas.migrate import migration_to_run
from cinderblock.domain.status import AttachStatus, Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import (
    HOST,
    Story,
    available,
    errored_on_create,
    in_state,
    recorded,
    state,
    story,
)

pytestmark = pytest.mark.unit

DEST = "node2@file-b#pool0"
NEW_HOST = "node2@file-b#pool0"


def names(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def start(
    volume: Volume, destination: str = DEST, *, lock: bool = True, copy: bool = False
) -> None:
    volume.start_migration(destination, force_host_copy=copy, lock_volume=lock)


def migrating(*, lock: bool = True, attached: bool = False) -> tuple[Story, int]:
    """Given: an available (or attached, in-use) volume, MigrationStarted. Returns the story
    and the request version (the MigrationStarted event's ``originator_version``)."""
    s = story()
    if attached:
        s.volume.attach(
            "att-1", mountpoint="/dev/vdb", mode="rw", instance_uuid="i-1", host_name=None
        )
    start(s.volume, lock=lock)
    started = s.new_events()[-1]
    return s, started.originator_version


def stale(volume: Volume, version: int) -> str:
    return f"No migration of volume {volume.vid} at {version}."


def assert_replays(s: Story) -> None:
    """The whole history (including what is still pending) rebuilds the same volume."""
    s.new_events()
    assert state(s.rebuilt()) == state(s.volume)


# -- backend_of -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "backend"),
    [
        ("node1@file-a#pool0", "node1@file-a"),
        ("node1@file-a", "node1@file-a"),
        ("node1", "node1"),
        ("node1@file-a#pool#x", "node1@file-a"),
        ("", ""),
    ],
)
def test_backend_of(location: str, backend: str) -> None:
    assert backend_of(location) == backend


# -- start_migration: accepted ----------------------------------------------------------------


def test_locked_migration_of_an_available_volume_holds_it_in_maintenance() -> None:
    s = story()

    start(s.volume, lock=True, copy=True)

    events = s.new_events()
    assert names(events) == ["MigrationStarted"]
    assert recorded(events) == [
        (
            Volume.MigrationStarted,
            {
                "destination": DEST,
                "force_host_copy": True,
                "lock_volume": True,
                "previous_status": "available",
            },
        )
    ]
    assert type(events[0].previous_status) is str
    assert s.volume.status is Status.MAINTENANCE
    assert s.volume.previous_status is Status.AVAILABLE
    assert s.volume.migration_status == "starting"
    assert s.volume.host == HOST  # switched only when the copy is verified
    assert s.volume.pending_migration == {
        "destination": DEST,
        "request_version": events[0].originator_version,
        "source": HOST,
    }
    assert s.volume.version == events[0].originator_version == 3
    assert_replays(s)


def test_unlocked_migration_leaves_the_status_alone() -> None:
    s = story()

    start(s.volume, lock=False)

    (event,) = s.new_events()
    assert (event.lock_volume, event.force_host_copy) == (False, False)
    assert s.volume.status is Status.AVAILABLE
    assert s.volume.previous_status is Status.AVAILABLE
    assert s.volume.migration_status == "starting"
    assert_replays(s)


@pytest.mark.parametrize("lock", [True, False])
def test_migration_of_an_in_use_volume_is_never_locked(lock: bool) -> None:
    s, _ = migrating(lock=lock, attached=True)

    assert s.volume.status is Status.IN_USE
    assert s.volume.previous_status is Status.IN_USE
    assert s.volume.attach_status is AttachStatus.ATTACHED
    assert s.volume.migration_status == "starting"
    assert_replays(s)


@pytest.mark.parametrize("destination", ["node1@file-a#pool1", "node2@file-a", "node2@file-b"])
def test_migration_to_another_pool_or_backend(destination: str) -> None:
    volume = available()

    start(volume, destination)

    (event,) = volume.collect_events()
    assert event.destination == destination
    assert volume.pending_migration["destination"] == destination  # type: ignore[index]


@pytest.mark.parametrize("migration_status", [None, "deleting", "error", "success"])
def test_migration_when_not_migrating(migration_status: str | None) -> None:
    volume = in_state(available(), Status.AVAILABLE, migration_status=migration_status)

    start(volume)

    assert names(volume.collect_events()) == ["MigrationStarted"]
    assert volume.migration_status == "starting"


# -- start_migration: refused -----------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [s for s in Status if s not in (Status.AVAILABLE, Status.IN_USE)],
    ids=lambda s: s.value,
)
def test_migration_requires_available_or_in_use(status: Status) -> None:
    volume = in_state(available(), status)
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        start(volume)

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == MIGRATE_REFUSED.format(vid=volume.vid)
    assert volume.collect_events() == []
    assert state(volume) == before


@pytest.mark.parametrize("migration_status", ["starting", "migrating", "completing"])
def test_migration_of_a_migrating_volume_is_refused(migration_status: str) -> None:
    volume = in_state(available(), Status.AVAILABLE, migration_status=migration_status)
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        start(volume, "node3@file-c")

    assert raised.value.message == MIGRATE_REFUSED.format(vid=volume.vid)
    assert volume.collect_events() == []
    assert state(volume) == before


def test_second_migration_of_an_unlocked_volume_is_refused() -> None:
    s, version = migrating(lock=False)
    before = state(s.volume)

    with pytest.raises(InvalidVolumeError, match=r"must not be migrating"):
        start(s.volume, "node3@file-c")

    assert s.volume.collect_events() == []
    assert state(s.volume) == before
    assert s.volume.pending_migration["request_version"] == version  # type: ignore[index]


def test_second_migration_of_a_locked_volume_is_refused_by_its_status() -> None:
    s, _ = migrating(lock=True)

    with pytest.raises(InvalidVolumeError, match=r"status must be available or in-use"):
        start(s.volume, "node3@file-c")

    assert s.volume.collect_events() == []


@pytest.mark.parametrize("destination", [HOST, "node1@file-a"])
def test_migration_to_the_current_host_is_refused(destination: str) -> None:
    volume = available()
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        start(volume, destination)

    assert raised.value.message == MIGRATE_REFUSED.format(vid=volume.vid)
    assert volume.collect_events() == []
    assert state(volume) == before


def test_migration_of_a_volume_without_a_host_is_refused() -> None:
    volume = errored_on_create()
    volume.reset_status(
        status="available", attach_status=None, migration_status=None, migration_given=False
    )
    volume.collect_events()

    with pytest.raises(InvalidVolumeError):
        start(volume, lock=True)

    assert volume.collect_events() == []


# -- mark_migration_copying -------------------------------------------------------------------


def test_mark_copying_sets_migrating() -> None:
    s, version = migrating()

    assert s.volume.mark_migration_copying(version) is True

    events = s.new_events()
    assert recorded(events) == [(Volume.MigrationCopying, {})]
    assert s.volume.migration_status == "migrating"
    assert s.volume.status is Status.MAINTENANCE
    assert s.volume.pending_migration["request_version"] == version  # type: ignore[index]
    assert_replays(s)


def test_mark_copying_twice_records_nothing_the_second_time() -> None:
    s, version = migrating()
    s.volume.mark_migration_copying(version)
    s.new_events()
    before = state(s.volume)

    assert s.volume.mark_migration_copying(version) is False

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


@pytest.mark.parametrize("offset", [-1, 1, 10])
def test_mark_copying_of_another_request_is_stale(offset: int) -> None:
    s, version = migrating()
    before = state(s.volume)

    with pytest.raises(StaleCommandError) as raised:
        s.volume.mark_migration_copying(version + offset)

    assert raised.value.message == stale(s.volume, version + offset)
    assert raised.value.code == "stale_command"
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_mark_copying_without_a_migration_is_stale() -> None:
    volume = available()

    with pytest.raises(StaleCommandError, match=r" at 3\.$"):
        volume.mark_migration_copying(3)

    assert volume.collect_events() == []


# -- complete_migration -----------------------------------------------------------------------


def test_complete_migration_switches_the_host_and_releases_the_hold() -> None:
    s, version = migrating(lock=True)
    s.volume.mark_migration_copying(version)
    s.new_events()

    s.volume.complete_migration(version, NEW_HOST)

    events = s.new_events()
    assert names(events) == ["MigrationCompleted"]
    assert recorded(events) == [
        (
            Volume.MigrationCompleted,
            {"host": NEW_HOST, "previous_host": HOST, "status": "available"},  # it leads to
        )
    ]
    assert s.volume.host == NEW_HOST
    assert s.volume.migration_status == "success"
    assert s.volume.status is Status.AVAILABLE  # previous status restored
    assert s.volume.pending_migration is None
    assert migration_to_run(s.volume, version) is None
    assert_replays(s)


def test_complete_migration_without_the_copying_step() -> None:
    s, version = migrating(lock=False)

    s.volume.complete_migration(version, NEW_HOST)

    assert names(s.new_events()) == ["MigrationCompleted"]
    assert (s.volume.status, s.volume.migration_status) == (Status.AVAILABLE, "success")


def test_complete_migration_of_an_attached_volume_keeps_it_in_use() -> None:
    s, version = migrating(lock=True, attached=True)
    s.volume.mark_migration_copying(version)

    s.volume.complete_migration(version, NEW_HOST)

    assert names(s.new_events()) == ["MigrationCopying", "MigrationCompleted"]
    assert s.volume.status is Status.IN_USE
    assert s.volume.attach_status is AttachStatus.ATTACHED
    assert list(s.volume.attachments) == ["att-1"]
    assert s.volume.host == NEW_HOST
    assert_replays(s)


def test_complete_migration_releases_a_retyping_hold() -> None:
    s, version = migrating(lock=False, attached=True)
    s.volume.status = Status.RETYPING  # a retype that needed a migration holds it

    s.volume.complete_migration(version, NEW_HOST)

    assert s.volume.status is Status.IN_USE


@pytest.mark.parametrize(
    "status", [Status.ERROR, Status.AVAILABLE, Status.ERROR_EXTENDING], ids=lambda s: s.value
)
def test_complete_migration_leaves_a_status_that_is_not_a_hold(status: Status) -> None:
    s, version = migrating(lock=True)
    s.volume.reset_status(
        status=status.value, attach_status=None, migration_status=None, migration_given=False
    )
    s.new_events()

    s.volume.complete_migration(version, NEW_HOST)

    assert s.volume.status is status
    assert s.volume.migration_status == "success"
    assert_replays(s)


def test_complete_migration_twice_is_stale() -> None:
    s, version = migrating()
    s.volume.complete_migration(version, NEW_HOST)
    s.new_events()
    before = state(s.volume)

    with pytest.raises(StaleCommandError) as raised:
        s.volume.complete_migration(version, "node3@file-c#pool0")

    assert raised.value.message == stale(s.volume, version)
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


@pytest.mark.parametrize("offset", [-1, 1])
def test_complete_migration_of_another_request_is_stale(offset: int) -> None:
    s, version = migrating()
    before = state(s.volume)

    with pytest.raises(StaleCommandError, match=rf" at {version + offset}\.$"):
        s.volume.complete_migration(version + offset, NEW_HOST)

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


# -- fail_migration ---------------------------------------------------------------------------


def test_fail_migration_releases_the_hold_and_keeps_the_host() -> None:
    s, version = migrating(lock=True)
    s.volume.mark_migration_copying(version)
    s.new_events()

    s.volume.fail_migration(version, "checksum mismatch")

    events = s.new_events()
    assert names(events) == ["MigrationFailed"]
    assert recorded(events) == [
        (
            Volume.MigrationFailed,
            {"reason": "checksum mismatch", "destination": DEST, "status": "available"},
        )
    ]
    assert s.volume.host == HOST
    assert s.volume.migration_status == "error"
    assert s.volume.status is Status.AVAILABLE  # previous status restored
    assert s.volume.pending_migration is None
    assert migration_to_run(s.volume, version) is None
    assert_replays(s)


def test_fail_migration_of_an_attached_volume_keeps_it_in_use() -> None:
    s, version = migrating(lock=True, attached=True)

    s.volume.fail_migration(version, "no space")

    assert s.volume.status is Status.IN_USE
    assert s.volume.migration_status == "error"
    assert_replays(s)


def test_fail_migration_releases_a_retyping_hold() -> None:
    s, version = migrating(lock=False)
    s.volume.status = Status.RETYPING

    s.volume.fail_migration(version, "no space")

    assert s.volume.status is Status.AVAILABLE


@pytest.mark.parametrize("settle", ["complete", "fail"])
def test_fail_migration_after_it_settled_is_stale(settle: str) -> None:
    s, version = migrating()
    if settle == "complete":
        s.volume.complete_migration(version, NEW_HOST)
    else:
        s.volume.fail_migration(version, "first")
    s.new_events()
    before = state(s.volume)

    with pytest.raises(StaleCommandError) as raised:
        s.volume.fail_migration(version, "gave up after repeated failures")

    assert raised.value.message == stale(s.volume, version)
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_complete_migration_after_a_failure_is_stale() -> None:
    s, version = migrating()
    s.volume.fail_migration(version, "first")
    s.new_events()

    with pytest.raises(StaleCommandError):
        s.volume.complete_migration(version, NEW_HOST)
    with pytest.raises(StaleCommandError):
        s.volume.mark_migration_copying(version)

    assert s.volume.collect_events() == []
    assert s.volume.host == HOST


def test_fail_migration_without_a_migration_is_stale() -> None:
    volume = available()

    with pytest.raises(StaleCommandError, match=r" at 3\.$"):
        volume.fail_migration(3, "late")

    assert volume.collect_events() == []


# -- a held volume ----------------------------------------------------------------------------


def test_a_held_volume_refuses_attach_detach_connect_and_metadata() -> None:
    s, _ = migrating(lock=True)
    before = state(s.volume)
    maintenance = f"Volume {s.volume.vid} is in maintenance."

    with pytest.raises(InvalidVolumeError, match=f"^{maintenance}$"):
        s.volume.attach(
            "att-1", mountpoint="/dev/vdb", mode="rw", instance_uuid="i", host_name=None
        )
    with pytest.raises(InvalidVolumeError, match=f"^{maintenance}$"):
        s.volume.detach(None)
    with pytest.raises(InvalidVolumeError, match=f"^{maintenance}$"):
        s.volume.check_connectable()
    with pytest.raises(InvalidVolumeError, match="in maintenance status"):
        s.volume.set_image_metadata({"a": "1"})
    with pytest.raises(InvalidVolumeError):
        s.volume.reserve()
    with pytest.raises(InvalidVolumeError):
        s.volume.request_delete(force=True)

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_an_unlocked_migrating_volume_ignores_begin_detaching() -> None:
    s, _ = migrating(lock=False, attached=True)
    before = state(s.volume)

    s.volume.begin_detaching()

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


# -- one migration after another --------------------------------------------------------------


@pytest.mark.parametrize("settle", ["complete", "fail"])
def test_a_new_migration_after_one_settled(settle: str) -> None:
    s, first = migrating(lock=True)
    if settle == "complete":
        s.volume.complete_migration(first, NEW_HOST)
    else:
        s.volume.fail_migration(first, "no space")
    s.new_events()

    start(s.volume, "node3@file-c#pool0", lock=False)

    (started,) = s.new_events()
    second = started.originator_version
    assert second != first
    assert s.volume.previous_status is Status.AVAILABLE
    assert s.volume.pending_migration == {
        "destination": "node3@file-c#pool0",
        "request_version": second,
        "source": NEW_HOST if settle == "complete" else HOST,
    }
    with pytest.raises(StaleCommandError):
        s.volume.complete_migration(first, NEW_HOST)
    assert migration_to_run(s.volume, first) is None
    assert migration_to_run(s.volume, second) == "node3@file-c#pool0"

    s.volume.complete_migration(second, "node3@file-c#pool0")

    assert s.volume.host == "node3@file-c#pool0"
    (completed,) = s.new_events()
    assert completed.previous_host == (NEW_HOST if settle == "complete" else HOST)
    assert_replays(s)


def test_migrating_back_to_the_first_host() -> None:
    s, version = migrating()
    s.volume.complete_migration(version, NEW_HOST)

    start(s.volume, HOST)

    assert names(s.new_events()) == ["MigrationCompleted", "MigrationStarted"]
    assert s.volume.pending_migration["source"] == NEW_HOST  # type: ignore[index]


def test_after_a_migration_the_old_host_is_no_longer_the_current_one() -> None:
    s, version = migrating()
    s.volume.complete_migration(version, NEW_HOST)
    s.new_events()

    with pytest.raises(InvalidVolumeError, match="destination host/cluster must be different"):
        start(s.volume, "node2@file-b")

    assert s.volume.collect_events() == []


# -- migration_to_run -------------------------------------------------------------------------


def test_migration_to_run_names_the_destination() -> None:
    s, version = migrating()

    assert migration_to_run(s.volume, version) == DEST
    s.volume.mark_migration_copying(version)
    assert migration_to_run(s.volume, version) == DEST  # a redelivery resumes the copy
    assert s.new_events()[-1].originator_version == version + 1


def test_migration_to_run_without_a_volume() -> None:
    assert migration_to_run(None, 3) is None


@pytest.mark.parametrize("offset", [-1, 1])
def test_migration_to_run_for_another_request(offset: int) -> None:
    s, version = migrating()

    assert migration_to_run(s.volume, version + offset) is None


def test_migration_to_run_without_a_pending_migration() -> None:
    assert migration_to_run(available(), 3) is None


def test_migration_to_run_without_a_host() -> None:
    s, version = migrating()
    s.volume.host = None

    assert migration_to_run(s.volume, version) is None


def test_migration_to_run_decides_without_recording() -> None:
    s, version = migrating()
    before = state(s.volume)

    migration_to_run(s.volume, version)

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


# -- replay -----------------------------------------------------------------------------------

Command = Any

SCENARIOS: dict[str, list[Command]] = {
    "started": [],
    "copying": [lambda v, n: v.mark_migration_copying(n)],
    "completed": [
        lambda v, n: v.mark_migration_copying(n),
        lambda v, n: v.complete_migration(n, NEW_HOST),
    ],
    "failed": [lambda v, n: v.fail_migration(n, "checksum mismatch")],
    "completed, migrated back": [
        lambda v, n: v.complete_migration(n, NEW_HOST),
        lambda v, n: start(v, HOST, lock=False),
    ],
}


@pytest.mark.parametrize("attached", [False, True], ids=["available", "in-use"])
@pytest.mark.parametrize("commands", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_replay_rebuilds_the_live_volume(commands: list[Command], attached: bool) -> None:
    s, version = migrating(lock=True, attached=attached)
    for command in commands:
        command(s.volume, version)
    s.new_events()

    rebuilt = s.rebuilt()

    assert type(rebuilt) is Volume
    assert state(rebuilt) == state(s.volume)
    assert rebuilt.pending_migration == s.volume.pending_migration
    assert rebuilt.version == len(s.events)


def refuse(*_: Any, **__: Any) -> Any:
    pytest.fail("replay ran a decision")


def test_replay_runs_no_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    s, version = migrating()
    s.volume.mark_migration_copying(version)
    s.volume.fail_migration(version, "x")
    start(s.volume, "node3@file-c", lock=True)
    s.new_events()
    for name in (
        "start_migration",
        "mark_migration_copying",
        "complete_migration",
        "fail_migration",
        "migration_pending_for",
    ):
        monkeypatch.setattr(Volume, name, refuse)

    assert_replays(s)
