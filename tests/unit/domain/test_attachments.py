"""Legacy attachment bookkeeping (spec §3.7, §3.8, §3.10, §3.17-3.23, §5.3.4): reserve,
unreserve, attach, detach, begin/roll back detaching, terminate connection, force detach,
read-only flag, access mode, and the pure ``recompute`` and ``sanitize_host``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from cinderblock.domain.attachments import recompute, sanitize_host
from cinderblock.domain.errors import (
    AttachmentConflictError,
    InvalidInputError,
    InvalidVolumeError,
)
from cinderblock.domain.status import AttachStatus, Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import (
    Story,
    available,
    in_state,
    recorded,
    replay,
    state,
    story,
)

pytestmark = pytest.mark.unit

I1 = "11111111-1111-4111-8111-111111111111"
I2 = "22222222-2222-4222-8222-222222222222"
CONFLICT = "Detach volume from instance  using the Compute API"
MORE_THAN_ONE = "More than one attachment, but no attachment_id provided"
ALREADY_ATTACHED = "volume is already attached and multiple attachments are not enabled"


def attach(
    volume: Volume,
    attachment_id: str = "att-1",
    *,
    instance: str | None = I1,
    host: str | None = None,
    mode: str = "rw",
    mountpoint: str = "/dev/vdb",
) -> None:
    volume.attach(
        attachment_id, mountpoint=mountpoint, mode=mode, instance_uuid=instance, host_name=host
    )


def names(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def attached(**overrides: Any) -> Story:
    """Given: an available volume, Reserved, Attached (att-1 to instance I1, rw)."""
    s = story(**overrides)
    s.volume.reserve()
    attach(s.volume)
    s.new_events()
    return s


def attached_twice() -> Story:
    """Given: a multiattach volume attached to I1 (att-1) and I2 (att-2), both rw."""
    s = attached(multiattach=True)
    s.volume.reserve()
    attach(s.volume, "att-2", instance=I2)
    s.new_events()
    return s


def maintenance_message(volume: Volume) -> str:
    return f"Volume {volume.vid} is in maintenance."


def begin_detaching_message(status: str, attach_status: str) -> str:
    return (
        "Volume status must be 'in-use' and attach_status must be 'attached' to begin "
        f"detaching, currently status {status} and attach_status {attach_status}."
    )


def assert_replays(s: Story) -> None:
    """The whole history (including what is still pending) rebuilds the same volume."""
    s.new_events()
    assert state(s.rebuilt()) == state(s.volume)


# -- os-reserve (§3.17) -----------------------------------------------------------------------


def test_reserve_moves_an_available_volume_to_attaching() -> None:
    s = story()

    s.volume.reserve()

    events = s.new_events()
    assert names(events) == ["Reserved"]
    assert recorded(events) == [(Volume.Reserved, {})]
    assert s.volume.status is Status.ATTACHING
    assert s.volume.attach_status is AttachStatus.DETACHED
    assert s.volume.attachments == {}  # no attachment record is created
    assert s.volume.admin_metadata == {}
    assert_replays(s)


def test_reserving_twice_is_refused() -> None:
    s = story()
    s.volume.reserve()
    s.new_events()
    before = state(s.volume)

    with pytest.raises(InvalidVolumeError) as raised:
        s.volume.reserve()

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == (
        "Volume status must be available to reserve, but the status is attaching."
    )
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


@pytest.mark.parametrize(
    "status", [s for s in Status if s is not Status.AVAILABLE], ids=lambda s: s.value
)
def test_reserve_requires_available(status: Status) -> None:
    volume = in_state(available(), status)
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.reserve()

    assert raised.value.message == (
        f"Volume status must be available to reserve, but the status is {status.value}."
    )
    assert volume.collect_events() == []
    assert state(volume) == before


def test_multiattach_volume_in_use_can_be_reserved_again() -> None:
    s = attached(multiattach=True)

    s.volume.reserve()

    assert names(s.new_events()) == ["Reserved"]
    assert s.volume.status is Status.ATTACHING
    assert s.volume.attach_status is AttachStatus.ATTACHED
    assert list(s.volume.attachments) == ["att-1"]
    assert_replays(s)


def test_multiattach_set_on_the_volume_allows_reserving_in_use() -> None:
    volume = in_state(available(), Status.IN_USE, attachment_ids=["att-1"], multiattach=True)

    volume.reserve()

    assert names(volume.collect_events()) == ["Reserved"]
    assert volume.status is Status.ATTACHING


@pytest.mark.parametrize(
    "status",
    [s for s in Status if s not in (Status.AVAILABLE, Status.IN_USE)],
    ids=lambda s: s.value,
)
def test_multiattach_reserve_requires_available_or_in_use(status: Status) -> None:
    volume = in_state(available(multiattach=True), status)
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.reserve()

    assert raised.value.message.endswith(f"to reserve, but the status is {status.value}.")
    assert volume.collect_events() == []
    assert state(volume) == before


def test_multiattach_reserve_refusal_names_both_allowed_statuses() -> None:
    volume = in_state(available(multiattach=True), Status.ATTACHING)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.reserve()

    assert raised.value.message == (
        "Volume status must be available or in-use to reserve, but the status is attaching."
    )


# -- os-unreserve (§3.18) ---------------------------------------------------------------------


def test_unreserve_without_attachments_returns_to_available() -> None:
    s = story()
    s.volume.reserve()
    s.new_events()

    s.volume.unreserve()

    events = s.new_events()
    assert recorded(events) == [(Volume.Unreserved, {"status": "available"})]
    assert type(events[0].status) is str
    assert s.volume.status is Status.AVAILABLE
    assert s.volume.attach_status is AttachStatus.DETACHED
    assert_replays(s)


def test_unreserve_with_attachments_returns_to_in_use() -> None:
    s = attached(multiattach=True)
    s.volume.reserve()
    s.new_events()

    s.volume.unreserve()

    assert recorded(s.new_events()) == [(Volume.Unreserved, {"status": "in-use"})]
    assert s.volume.status is Status.IN_USE
    assert list(s.volume.attachments) == ["att-1"]
    assert_replays(s)


@pytest.mark.parametrize("row_status", ["error_attaching", "reserved", "attaching"])
def test_unreserve_counts_every_attachment_that_is_not_detached(row_status: str) -> None:
    volume = in_state(available(), Status.ATTACHING, attachment_ids=["att-1"])
    volume.attachments["att-1"]["attach_status"] = row_status

    volume.unreserve()

    assert recorded(volume.collect_events()) == [(Volume.Unreserved, {"status": "in-use"})]


@pytest.mark.parametrize(
    "status", [s for s in Status if s is not Status.ATTACHING], ids=lambda s: s.value
)
def test_unreserve_outside_attaching_records_nothing(status: Status) -> None:
    volume = in_state(available(), status)
    before = state(volume)

    volume.unreserve()

    assert volume.collect_events() == []
    assert state(volume) == before


# -- os-attach (§3.7) -------------------------------------------------------------------------


def test_attach_after_reserve_records_the_attachment() -> None:
    s = story()
    s.volume.reserve()
    s.new_events()

    attach(s.volume, "att-1", instance=I1, host="Compute_1", mountpoint="/dev/vdc")

    events = s.new_events()
    assert names(events) == ["Attached"]
    assert recorded(events) == [
        (
            Volume.Attached,
            {
                "attachment_id": "att-1",
                "instance_uuid": I1,
                "attached_host": "compute-1",
                "mountpoint": "/dev/vdc",
                "mode": "rw",
            },
        )
    ]
    assert s.volume.attachments == {
        "att-1": {
            "instance_uuid": I1,
            "attached_host": "compute-1",
            "mountpoint": "/dev/vdc",
            "attach_status": "attached",
            "attach_mode": "rw",
            "attach_time": events[0].timestamp.isoformat(),
        }
    }
    assert s.volume.status is Status.IN_USE
    assert s.volume.attach_status is AttachStatus.ATTACHED
    assert s.volume.admin_metadata == {"readonly": "False", "attached_mode": "rw"}
    assert s.volume.attachment_ids == ["att-1"]
    assert_replays(s)


def test_attach_read_only_records_ro_mode() -> None:
    s = story()

    attach(s.volume, mode="ro")

    (event,) = s.new_events()
    assert event.mode == "ro"
    assert s.volume.attachments["att-1"]["attach_mode"] == "ro"
    assert s.volume.admin_metadata == {"readonly": "False", "attached_mode": "ro"}
    assert s.volume.access_mode() == "ro"
    assert_replays(s)


def test_attach_by_host_name_only_stores_the_sanitized_host() -> None:
    s = story()

    attach(s.volume, instance=None, host="..Compute Node_01.example.com-")

    (event,) = s.new_events()
    assert event.instance_uuid is None
    assert event.attached_host == "compute-node-01.example.com"
    assert s.volume.attachments["att-1"]["attached_host"] == "compute-node-01.example.com"
    assert s.volume.attachments["att-1"]["instance_uuid"] is None


def test_attach_with_an_empty_host_name_stores_no_host() -> None:
    volume = available()

    attach(volume, instance=I1, host="")

    assert volume.attachments["att-1"]["attached_host"] is None


@pytest.mark.parametrize(
    "status",
    [Status.AVAILABLE, Status.RESERVED, Status.ERROR, Status.DETACHING, Status.CREATING],
    ids=lambda s: s.value,
)
def test_attach_needs_no_reserve_and_has_no_status_precondition(status: Status) -> None:
    volume = in_state(available(), status)

    attach(volume)

    assert names(volume.collect_events()) == ["Attached"]
    assert volume.status is Status.IN_USE
    assert volume.attach_status is AttachStatus.ATTACHED


def test_attach_keeps_an_existing_readonly_flag() -> None:
    s = story()
    s.volume.update_readonly_flag(True)
    s.new_events()

    attach(s.volume, mode="ro")

    assert names(s.new_events()) == ["Attached"]
    assert s.volume.admin_metadata == {"readonly": "True", "attached_mode": "ro"}
    assert_replays(s)


def test_readonly_volume_refuses_a_read_write_attach() -> None:
    s = story()
    s.volume.update_readonly_flag(True)
    s.new_events()
    before = state(s.volume)

    with pytest.raises(InvalidInputError) as raised:
        attach(s.volume, mode="rw")

    assert type(raised.value) is InvalidInputError
    assert raised.value.message == f"Invalid attaching mode 'rw' for volume {s.volume.vid}."
    assert s.volume.collect_events() == []
    assert state(s.volume) == before
    assert s.volume.status is Status.AVAILABLE


def test_readonly_flag_set_false_allows_a_read_write_attach() -> None:
    s = story()
    s.volume.update_readonly_flag(True)
    s.volume.update_readonly_flag(False)
    s.new_events()

    attach(s.volume, mode="rw")

    assert names(s.new_events()) == ["Attached"]
    assert s.volume.admin_metadata == {"readonly": "False", "attached_mode": "rw"}


def test_attach_in_maintenance_is_refused_before_the_readonly_check() -> None:
    volume = in_state(available(), Status.MAINTENANCE)
    volume.admin_metadata["readonly"] = "True"
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        attach(volume, mode="rw")

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == maintenance_message(volume)
    assert volume.collect_events() == []
    assert state(volume) == before


def test_attach_while_attaching_in_another_mode_is_refused() -> None:
    s = attached(multiattach=True)
    s.volume.reserve()
    s.new_events()
    before = state(s.volume)

    with pytest.raises(InvalidVolumeError) as raised:
        attach(s.volume, "att-2", instance=I2, mode="ro")

    assert raised.value.message == "being attached by different mode"
    assert s.volume.collect_events() == []
    assert state(s.volume) == before
    assert s.volume.status is Status.ATTACHING


def test_attach_in_another_mode_is_fine_when_not_attaching() -> None:
    """The mode check applies only while ``attaching`` (§3.7-5a)."""
    s = attached(multiattach=True)

    attach(s.volume, "att-2", instance=I2, mode="ro")

    assert names(s.new_events()) == ["Attached"]
    assert s.volume.admin_metadata["attached_mode"] == "ro"
    assert {k: r["attach_mode"] for k, r in s.volume.attachments.items()} == {
        "att-1": "rw",
        "att-2": "ro",
    }


def test_repeated_attach_of_the_same_instance_records_nothing() -> None:
    s = attached()
    before = state(s.volume)

    attach(s.volume, "att-9", instance=I1, mountpoint="/dev/vdz")

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_repeated_attach_of_the_same_host_records_nothing() -> None:
    s = story()
    attach(s.volume, instance=None, host="Node_1")
    s.new_events()
    before = state(s.volume)

    attach(s.volume, "att-9", instance=None, host="node-1")

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_repeated_attach_while_attaching_only_sets_in_use() -> None:
    s = attached(multiattach=True)
    s.volume.reserve()
    s.new_events()

    attach(s.volume, "att-9", instance=I1)

    assert recorded(s.new_events()) == [(Volume.Unreserved, {"status": "in-use"})]
    assert s.volume.status is Status.IN_USE
    assert list(s.volume.attachments) == ["att-1"]
    assert_replays(s)


def test_second_instance_on_a_volume_without_multiattach_is_refused() -> None:
    s = attached()
    before = state(s.volume)

    with pytest.raises(InvalidVolumeError) as raised:
        attach(s.volume, "att-2", instance=I2)

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == ALREADY_ATTACHED
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_second_host_on_a_volume_without_multiattach_is_refused() -> None:
    s = story()
    attach(s.volume, instance=None, host="node-1")
    s.new_events()

    with pytest.raises(InvalidVolumeError, match=f"^{ALREADY_ATTACHED}$"):
        attach(s.volume, "att-2", instance=None, host="node-2")

    assert s.volume.collect_events() == []


def test_second_instance_is_allowed_while_the_volume_is_migrating() -> None:
    """§3.7-5c refuses only when ``migration_status`` is null."""
    s = attached()
    s.volume.start_migration("node2@file-b#pool0", force_host_copy=False, lock_volume=False)
    s.new_events()

    attach(s.volume, "att-2", instance=I2)

    assert names(s.new_events()) == ["Attached"]
    assert sorted(s.volume.attachments) == ["att-1", "att-2"]
    assert s.volume.status is Status.IN_USE
    assert_replays(s)


def test_multiattach_volume_takes_a_second_instance() -> None:
    s = attached(multiattach=True)
    s.volume.reserve()

    attach(s.volume, "att-2", instance=I2, mountpoint="/dev/vdc")

    assert names(s.new_events()) == ["Reserved", "Attached"]
    assert sorted(s.volume.attachments) == ["att-1", "att-2"]
    assert s.volume.attachments["att-2"]["instance_uuid"] == I2
    assert s.volume.attachments["att-2"]["mountpoint"] == "/dev/vdc"
    assert (s.volume.status, s.volume.attach_status) == (Status.IN_USE, AttachStatus.ATTACHED)
    assert_replays(s)


def test_multiattach_set_on_the_volume_takes_a_second_instance_without_reserve() -> None:
    volume = in_state(available(), Status.IN_USE, attachment_ids=["att-1"], multiattach=True)
    volume.attach_status = AttachStatus.ATTACHED

    attach(volume, "att-2", instance=I2)

    assert names(volume.collect_events()) == ["Attached"]
    assert sorted(volume.attachments) == ["att-1", "att-2"]


# -- os-begin_detaching / os-roll_detaching (§3.19, §3.20) ------------------------------------


def test_begin_detaching_of_an_attached_volume() -> None:
    s = attached()
    rows = {k: dict(v) for k, v in s.volume.attachments.items()}

    s.volume.begin_detaching()

    events = s.new_events()
    assert recorded(events) == [(Volume.DetachingBegun, {})]
    assert s.volume.status is Status.DETACHING
    assert s.volume.attach_status is AttachStatus.ATTACHED
    assert s.volume.attachments == rows
    assert_replays(s)


@pytest.mark.parametrize("migration_status", [None, "deleting", "error", "success"])
def test_begin_detaching_when_not_migrating(migration_status: str | None) -> None:
    s = attached()
    s.volume.migration_status = migration_status

    s.volume.begin_detaching()

    assert names(s.volume.collect_events()) == ["DetachingBegun"]
    assert s.volume.status is Status.DETACHING


def test_begin_detaching_of_an_available_volume_is_refused() -> None:
    s = story()

    with pytest.raises(InvalidVolumeError) as raised:
        s.volume.begin_detaching()

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == begin_detaching_message("available", "detached")
    assert s.volume.collect_events() == []


def test_begin_detaching_twice_is_refused() -> None:
    s = attached()
    s.volume.begin_detaching()
    s.new_events()
    before = state(s.volume)

    with pytest.raises(InvalidVolumeError) as raised:
        s.volume.begin_detaching()

    assert raised.value.message == begin_detaching_message("detaching", "attached")
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


@pytest.mark.parametrize(
    ("status", "attach_status"),
    [
        (Status.IN_USE, AttachStatus.DETACHED),
        (Status.MAINTENANCE, AttachStatus.ATTACHED),
        (Status.ERROR, AttachStatus.ATTACHED),
        (Status.ATTACHING, AttachStatus.ATTACHED),
        (Status.AVAILABLE, AttachStatus.ATTACHED),
    ],
    ids=lambda v: v.value,
)
def test_begin_detaching_needs_in_use_and_attached(
    status: Status, attach_status: AttachStatus
) -> None:
    volume = in_state(available(), status, attachment_ids=["att-1"], attach_status=attach_status)
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.begin_detaching()

    assert raised.value.message == begin_detaching_message(status.value, attach_status.value)
    assert volume.collect_events() == []
    assert state(volume) == before


@pytest.mark.parametrize("migration_status", ["starting", "migrating", "completing"])
@pytest.mark.parametrize(
    "status", [Status.IN_USE, Status.AVAILABLE, Status.MAINTENANCE], ids=lambda s: s.value
)
def test_begin_detaching_during_a_migration_changes_nothing(
    status: Status, migration_status: str
) -> None:
    volume = in_state(
        available(),
        status,
        attachment_ids=["att-1"],
        attach_status=AttachStatus.ATTACHED,
        migration_status=migration_status,
    )
    before = state(volume)

    volume.begin_detaching()

    assert volume.collect_events() == []
    assert state(volume) == before


def test_roll_detaching_returns_to_in_use() -> None:
    s = attached()
    s.volume.begin_detaching()
    s.new_events()

    s.volume.roll_detaching()

    assert recorded(s.new_events()) == [(Volume.DetachingRolledBack, {})]
    assert s.volume.status is Status.IN_USE
    assert s.volume.attach_status is AttachStatus.ATTACHED
    assert_replays(s)


@pytest.mark.parametrize(
    "status", [s for s in Status if s is not Status.DETACHING], ids=lambda s: s.value
)
def test_roll_detaching_outside_detaching_records_nothing(status: Status) -> None:
    volume = in_state(available(), status)
    before = state(volume)

    volume.roll_detaching()

    assert volume.collect_events() == []
    assert state(volume) == before


# -- os-detach (§3.8) -------------------------------------------------------------------------


def test_detach_of_the_only_attachment_makes_the_volume_available() -> None:
    s = attached()

    s.volume.detach("att-1")

    events = s.new_events()
    assert names(events) == ["Detached"]
    assert recorded(events) == [
        (
            Volume.Detached,
            {"attachment_id": "att-1", "status": "available", "attach_status": "detached"},
        )
    ]
    assert type(events[0].status) is str
    assert s.volume.attachments == {}
    assert s.volume.status is Status.AVAILABLE
    assert s.volume.attach_status is AttachStatus.DETACHED
    assert s.volume.admin_metadata == {"readonly": "False"}  # attached_mode removed
    assert s.volume.access_mode() == "rw"
    assert_replays(s)


def test_detach_without_an_id_detaches_the_only_attachment() -> None:
    s = attached()

    s.volume.detach(None)

    assert recorded(s.new_events()) == [
        (
            Volume.Detached,
            {"attachment_id": "att-1", "status": "available", "attach_status": "detached"},
        )
    ]
    assert s.volume.attachments == {}
    assert_replays(s)


def test_detach_while_detaching() -> None:
    s = attached()
    s.volume.begin_detaching()
    s.new_events()

    s.volume.detach("att-1")

    assert names(s.new_events()) == ["Detached"]
    assert (s.volume.status, s.volume.attach_status) == (
        Status.AVAILABLE,
        AttachStatus.DETACHED,
    )


def test_detach_without_attachments_resets_an_error_volume_to_available() -> None:
    s = story()
    s.volume.reset_status(
        status="error", attach_status=None, migration_status=None, migration_given=False
    )
    s.new_events()

    s.volume.detach(None)

    assert recorded(s.new_events()) == [
        (
            Volume.Detached,
            {"attachment_id": None, "status": "available", "attach_status": "detached"},
        )
    ]
    assert s.volume.status is Status.AVAILABLE
    assert_replays(s)


def test_detach_without_attachments_resets_a_stale_attach_status() -> None:
    volume = in_state(available(), Status.AVAILABLE, attach_status=AttachStatus.ATTACHED)

    volume.detach(None)

    assert recorded(volume.collect_events()) == [
        (
            Volume.Detached,
            {"attachment_id": None, "status": "available", "attach_status": "detached"},
        )
    ]
    assert volume.attach_status is AttachStatus.DETACHED


@pytest.mark.parametrize("service", [False, True])
def test_detach_of_a_detached_available_volume_records_nothing(service: bool) -> None:
    s = story()
    before = state(s.volume)

    s.volume.detach(None, service=service)

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_detach_of_an_unknown_attachment_is_a_conflict() -> None:
    s = attached()
    before = state(s.volume)

    with pytest.raises(AttachmentConflictError) as raised:
        s.volume.detach("att-unknown")

    assert raised.value.message == CONFLICT
    assert raised.value.code == "attachment_conflict"
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_service_detach_of_an_unknown_attachment_recomputes_the_statuses() -> None:
    """§3.8-5: only a service caller gets past the safety check with an unknown id."""
    s = attached()
    s.volume.reset_status(
        status="error", attach_status=None, migration_status=None, migration_given=False
    )
    s.new_events()

    s.volume.detach("att-unknown", service=True)

    assert recorded(s.new_events()) == [
        (Volume.Detached, {"attachment_id": None, "status": "in-use", "attach_status": "attached"})
    ]
    assert list(s.volume.attachments) == ["att-1"]
    assert s.volume.admin_metadata["attached_mode"] == "rw"
    assert s.volume.status is Status.IN_USE
    assert_replays(s)


def test_detach_in_maintenance_is_refused_after_the_safety_check() -> None:
    s = attached()
    s.volume.reset_status(
        status="maintenance", attach_status=None, migration_status=None, migration_given=False
    )
    s.new_events()
    before = state(s.volume)

    with pytest.raises(InvalidVolumeError) as raised:
        s.volume.detach("att-1")
    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == maintenance_message(s.volume)

    with pytest.raises(AttachmentConflictError):
        s.volume.detach("att-unknown")

    with pytest.raises(InvalidVolumeError, match="is in maintenance"):
        s.volume.detach("att-unknown", service=True)

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_detach_of_the_last_attachment_keeps_the_status_while_migrating() -> None:
    s = attached()
    s.volume.start_migration("node2@file-b#pool0", force_host_copy=False, lock_volume=False)
    s.new_events()

    s.volume.detach("att-1")

    events = s.new_events()
    assert recorded(events) == [
        (
            Volume.Detached,
            {"attachment_id": "att-1", "status": "in-use", "attach_status": "detached"},
        )
    ]
    assert s.volume.status is Status.IN_USE
    assert s.volume.attach_status is AttachStatus.DETACHED
    assert s.volume.attachments == {}
    assert_replays(s)


def test_detach_of_the_last_attachment_keeps_uploading() -> None:
    volume = in_state(
        available(), Status.UPLOADING, attachment_ids=["att-1"], attach_status=AttachStatus.ATTACHED
    )

    volume.detach("att-1")

    assert recorded(volume.collect_events()) == [
        (
            Volume.Detached,
            {"attachment_id": "att-1", "status": "uploading", "attach_status": "detached"},
        )
    ]
    assert volume.status is Status.UPLOADING
    assert volume.attach_status is AttachStatus.DETACHED


# -- multiattach detach -----------------------------------------------------------------------


def test_detach_of_one_of_two_attachments_keeps_the_volume_in_use() -> None:
    s = attached_twice()

    s.volume.detach("att-1")

    assert recorded(s.new_events()) == [
        (
            Volume.Detached,
            {"attachment_id": "att-1", "status": "in-use", "attach_status": "attached"},
        )
    ]
    assert list(s.volume.attachments) == ["att-2"]
    assert s.volume.attachments["att-2"]["instance_uuid"] == I2
    assert (s.volume.status, s.volume.attach_status) == (Status.IN_USE, AttachStatus.ATTACHED)
    assert s.volume.admin_metadata == {"readonly": "False"}  # attached_mode goes, as in Cinder
    assert_replays(s)

    s.volume.detach("att-2")

    assert recorded(s.new_events()) == [
        (
            Volume.Detached,
            {"attachment_id": "att-2", "status": "available", "attach_status": "detached"},
        )
    ]
    assert s.volume.attachments == {}
    assert s.volume.status is Status.AVAILABLE
    assert_replays(s)


def test_service_detach_without_an_id_of_two_attachments_is_a_bad_request() -> None:
    s = attached_twice()
    before = state(s.volume)

    with pytest.raises(InvalidVolumeError) as raised:
        s.volume.detach(None, service=True)

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == MORE_THAN_ONE
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_user_detach_without_an_id_of_two_attachments_is_a_conflict() -> None:
    s = attached_twice()
    before = state(s.volume)

    with pytest.raises(AttachmentConflictError) as raised:
        s.volume.detach(None)

    assert raised.value.message == CONFLICT
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_multiattach_set_on_the_volume_detach_without_an_id() -> None:
    volume = in_state(
        available(),
        Status.IN_USE,
        attachment_ids=["att-1", "att-2"],
        attach_status=AttachStatus.ATTACHED,
        multiattach=True,
    )

    with pytest.raises(AttachmentConflictError, match=f"^{CONFLICT}$"):
        volume.detach(None, service=False)
    with pytest.raises(InvalidVolumeError, match=f"^{MORE_THAN_ONE}$"):
        volume.detach(None, service=True)

    assert volume.collect_events() == []


# -- os-terminate_connection (§3.21) ----------------------------------------------------------


def test_terminate_connection_unreserves_an_attaching_volume() -> None:
    s = story()
    s.volume.reserve()
    s.new_events()

    s.volume.terminate_connection()

    assert recorded(s.new_events()) == [(Volume.Unreserved, {"status": "available"})]
    assert s.volume.status is Status.AVAILABLE
    assert_replays(s)


def test_terminate_connection_keeps_attachment_rows() -> None:
    s = attached()
    before = state(s.volume)

    s.volume.terminate_connection()

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_terminate_connection_has_no_maintenance_check() -> None:
    volume = in_state(available(), Status.MAINTENANCE, attachment_ids=["att-1"])

    volume.terminate_connection()

    assert volume.collect_events() == []


def test_terminate_connection_with_two_attachments_is_a_conflict() -> None:
    s = attached_twice()
    s.volume.reserve()
    s.new_events()
    before = state(s.volume)

    with pytest.raises(AttachmentConflictError) as raised:
        s.volume.terminate_connection()

    assert raised.value.message == CONFLICT
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_service_terminate_connection_skips_the_safety_check() -> None:
    s = attached_twice()
    s.volume.reserve()
    s.new_events()

    s.volume.terminate_connection(service=True)  # type: ignore[call-arg]

    assert recorded(s.new_events()) == [(Volume.Unreserved, {"status": "in-use"})]


# -- os-force_detach (§3.10) ------------------------------------------------------------------


def test_force_detach_of_an_errored_volume_with_one_attachment() -> None:
    """The tempest case: ``error`` with one attachment → available, no attachments."""
    s = attached()
    s.volume.reset_status(
        status="error", attach_status=None, migration_status=None, migration_given=False
    )
    s.new_events()

    s.volume.force_detach("att-1")

    assert recorded(s.new_events()) == [
        (
            Volume.Detached,
            {"attachment_id": "att-1", "status": "available", "attach_status": "detached"},
        )
    ]
    assert s.volume.attachments == {}
    assert (s.volume.status, s.volume.attach_status) == (
        Status.AVAILABLE,
        AttachStatus.DETACHED,
    )
    assert_replays(s)


def test_force_detach_unreserves_then_detaches() -> None:
    s = attached(multiattach=True)
    s.volume.reserve()
    s.new_events()

    s.volume.force_detach("att-1")

    events = s.new_events()
    assert names(events) == ["Unreserved", "Detached"]
    assert recorded(events) == [
        (Volume.Unreserved, {"status": "in-use"}),
        (
            Volume.Detached,
            {"attachment_id": "att-1", "status": "available", "attach_status": "detached"},
        ),
    ]
    assert s.volume.status is Status.AVAILABLE
    assert_replays(s)


def test_force_detach_without_an_id_and_without_attachments() -> None:
    s = story()
    s.volume.reset_status(
        status="error", attach_status=None, migration_status=None, migration_given=False
    )
    s.new_events()

    s.volume.force_detach(None)

    assert recorded(s.new_events()) == [
        (
            Volume.Detached,
            {"attachment_id": None, "status": "available", "attach_status": "detached"},
        )
    ]
    assert_replays(s)


def test_force_detach_with_two_attachments_is_a_conflict_even_with_an_id() -> None:
    """Spec §3.10-3 QUIRK: the terminate step checks without the attachment id."""
    s = attached_twice()
    before = state(s.volume)

    with pytest.raises(AttachmentConflictError) as raised:
        s.volume.force_detach("att-1")

    assert raised.value.message == CONFLICT
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_force_detach_of_an_unknown_attachment_is_a_conflict() -> None:
    s = attached()
    before = state(s.volume)

    with pytest.raises(AttachmentConflictError, match=f"^{CONFLICT}$"):
        s.volume.force_detach("att-unknown")

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_force_detach_in_maintenance_is_refused() -> None:
    s = attached()
    s.volume.reset_status(
        status="maintenance", attach_status=None, migration_status=None, migration_given=False
    )
    s.new_events()
    before = state(s.volume)

    with pytest.raises(InvalidVolumeError) as raised:
        s.volume.force_detach("att-1")

    assert raised.value.message == maintenance_message(s.volume)
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


# -- os-update_readonly_flag (§3.23) ----------------------------------------------------------


@pytest.mark.parametrize(("readonly", "stored"), [(True, "True"), (False, "False")])
def test_update_readonly_flag_of_an_available_volume(readonly: bool, stored: str) -> None:
    s = story()

    s.volume.update_readonly_flag(readonly)

    events = s.new_events()
    assert names(events) == ["ReadonlyFlagUpdated"]
    assert recorded(events) == [(Volume.ReadonlyFlagUpdated, {"readonly": readonly})]
    assert s.volume.admin_metadata == {"readonly": stored}
    assert s.volume.status is Status.AVAILABLE
    assert_replays(s)


@pytest.mark.parametrize(
    "status", [s for s in Status if s is not Status.AVAILABLE], ids=lambda s: s.value
)
def test_update_readonly_flag_requires_available(status: Status) -> None:
    volume = in_state(available(), status)
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.update_readonly_flag(True)

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == "Volume status must be available to update readonly flag."
    assert volume.collect_events() == []
    assert state(volume) == before


# -- os-initialize_connection (§3.22): access mode and precondition ---------------------------


def test_access_mode_is_rw_by_default() -> None:
    assert available().access_mode() == "rw"


def test_access_mode_of_a_readonly_volume_is_ro() -> None:
    s = story()
    s.volume.update_readonly_flag(True)

    assert s.volume.access_mode() == "ro"


def test_access_mode_follows_the_attached_mode() -> None:
    s = story()
    attach(s.volume, mode="ro")
    assert s.volume.access_mode() == "ro"
    s.volume.detach("att-1")
    assert s.volume.access_mode() == "rw"

    volume = in_state(available(), Status.IN_USE)
    volume.admin_metadata.update({"readonly": "True", "attached_mode": "rw"})
    assert volume.access_mode() == "rw"  # the attached mode wins over the flag


@pytest.mark.parametrize(
    "status", [s for s in Status if s is not Status.MAINTENANCE], ids=lambda s: s.value
)
def test_a_connection_can_be_initialized_outside_maintenance(status: Status) -> None:
    volume = in_state(available(), status)
    before = state(volume)

    volume.check_connectable()
    volume.access_mode()

    assert volume.collect_events() == []
    assert state(volume) == before


def test_a_connection_cannot_be_initialized_in_maintenance() -> None:
    volume = in_state(available(), Status.MAINTENANCE)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.check_connectable()

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == maintenance_message(volume)
    assert volume.collect_events() == []


# -- full cycles ------------------------------------------------------------------------------


def test_reserve_attach_begin_roll_detach_cycle() -> None:
    s = story()
    v = s.volume
    steps: list[tuple[Callable[[], Any], str, Status, AttachStatus]] = [
        (v.reserve, "Reserved", Status.ATTACHING, AttachStatus.DETACHED),
        (lambda: attach(v), "Attached", Status.IN_USE, AttachStatus.ATTACHED),
        (v.begin_detaching, "DetachingBegun", Status.DETACHING, AttachStatus.ATTACHED),
        (v.roll_detaching, "DetachingRolledBack", Status.IN_USE, AttachStatus.ATTACHED),
        (v.begin_detaching, "DetachingBegun", Status.DETACHING, AttachStatus.ATTACHED),
        (lambda: v.detach("att-1"), "Detached", Status.AVAILABLE, AttachStatus.DETACHED),
    ]
    states = []
    for command, event_name, status, attach_status in steps:
        command()
        assert names(s.new_events()) == [event_name]
        assert (v.status, v.attach_status) == (status, attach_status)
        states.append(copy.deepcopy(state(v)))

    assert v.attachments == {}
    assert v.admin_metadata == {"readonly": "False"}
    for n, expected in enumerate(states, start=len(s.events) - len(steps) + 1):
        assert state(replay(s.events[:n])) == expected


def test_a_volume_can_be_attached_again_after_a_detach() -> None:
    s = attached()
    s.volume.detach("att-1")
    s.volume.reserve()
    attach(s.volume, "att-2", instance=I2, mode="ro")

    assert names(s.new_events()) == ["Detached", "Reserved", "Attached"]
    assert list(s.volume.attachments) == ["att-2"]
    assert s.volume.admin_metadata == {"readonly": "False", "attached_mode": "ro"}
    assert (s.volume.status, s.volume.attach_status) == (Status.IN_USE, AttachStatus.ATTACHED)
    assert_replays(s)


def test_reserve_then_unreserve_then_terminate_cycle() -> None:
    s = story()
    s.volume.reserve()
    s.volume.unreserve()
    s.volume.reserve()
    s.volume.terminate_connection()
    s.volume.unreserve()  # nothing left to unreserve

    assert names(s.new_events()) == ["Reserved", "Unreserved", "Reserved", "Unreserved"]
    assert s.volume.status is Status.AVAILABLE
    assert_replays(s)


def test_multiattach_cycle() -> None:
    s = story(multiattach=True)
    v = s.volume
    v.reserve()
    attach(v, "att-1", instance=I1)
    v.reserve()
    attach(v, "att-2", instance=I2)
    v.begin_detaching()
    v.detach("att-2")
    v.begin_detaching()
    v.roll_detaching()
    v.force_detach("att-1")

    assert names(s.new_events()) == [
        "Reserved",
        "Attached",
        "Reserved",
        "Attached",
        "DetachingBegun",
        "Detached",
        "DetachingBegun",
        "DetachingRolledBack",
        "Detached",
    ]
    assert v.attachments == {}
    assert (v.status, v.attach_status) == (Status.AVAILABLE, AttachStatus.DETACHED)
    assert_replays(s)


# -- replay -----------------------------------------------------------------------------------

Command = Callable[[Volume], Any]

SCENARIOS: dict[str, list[Command]] = {
    "reserved": [Volume.reserve],
    "unreserved": [Volume.reserve, Volume.unreserve],
    "attached rw": [Volume.reserve, attach],
    "attached ro by host": [lambda v: attach(v, instance=None, host="Node_1", mode="ro")],
    "readonly, attached ro": [
        lambda v: v.update_readonly_flag(True),
        lambda v: attach(v, mode="ro"),
    ],
    "detaching": [attach, Volume.begin_detaching],
    "rolled back": [attach, Volume.begin_detaching, Volume.roll_detaching],
    "detached": [attach, lambda v: v.detach("att-1")],
    "reset to error, force detached": [
        attach,
        lambda v: v.reset_status(
            status="error", attach_status=None, migration_status=None, migration_given=False
        ),
        lambda v: v.force_detach(None),
    ],
    "attached while migrating, detached": [
        attach,
        lambda v: v.start_migration("node2@file-b", force_host_copy=True, lock_volume=True),
        lambda v: v.detach("att-1"),
    ],
}


def live(commands: list[Command]) -> Story:
    s = story(multiattach=True)
    for command in commands:
        command(s.volume)
    s.new_events()
    return s


@pytest.mark.parametrize("commands", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_replay_rebuilds_the_live_volume(commands: list[Command]) -> None:
    s = live(commands)

    rebuilt = s.rebuilt()

    assert type(rebuilt) is Volume
    assert state(rebuilt) == state(s.volume)
    assert rebuilt.version == s.volume.version == len(s.events)


def refuse(*_: Any, **__: Any) -> Any:
    pytest.fail("replay ran a decision")


@pytest.mark.parametrize("commands", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_replay_runs_no_decision(commands: list[Command], monkeypatch: pytest.MonkeyPatch) -> None:
    s = live(commands)
    for name in (
        "reserve",
        "unreserve",
        "attach",
        "detach",
        "begin_detaching",
        "roll_detaching",
        "terminate_connection",
        "force_detach",
        "update_readonly_flag",
        "reset_status",
        "start_migration",
        "_safety_check",
        "_not_maintenance",
    ):
        monkeypatch.setattr(Volume, name, refuse)
    monkeypatch.setattr("cinderblock.domain.attachments.recompute", refuse)
    monkeypatch.setattr("cinderblock.domain.attachments.sanitize_host", refuse)

    assert state(replay(s.events)) == state(s.volume)


# -- recompute (§5.3.4) -----------------------------------------------------------------------


def rows(*statuses: str) -> dict[str, dict[str, Any]]:
    return {f"att-{n}": {"attach_status": s} for n, s in enumerate(statuses)}


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ((), ("available", "detached")),
        (("attached",), ("in-use", "attached")),
        (("attaching",), ("attaching", "attaching")),
        (("detaching",), ("detaching", "detaching")),
        (("reserved",), ("reserved", "reserved")),
        (("reserved", "detaching", "attaching", "attached"), ("in-use", "attached")),
        (("reserved", "detaching", "attaching"), ("attaching", "attaching")),
        (("reserved", "detaching"), ("detaching", "detaching")),
        (("reserved", "reserved"), ("reserved", "reserved")),
        (("error_attaching",), ("available", "detached")),
        (("error_detaching",), ("available", "detached")),
        (("error_attaching", "error_detaching"), ("available", "detached")),
        (("error_attaching", "reserved"), ("reserved", "reserved")),
        (("error_detaching", "detaching"), ("detaching", "detaching")),
        (("error_attaching", "attached"), ("in-use", "attached")),
    ],
)
def test_recompute_takes_the_first_live_attach_status(
    statuses: tuple[str, ...], expected: tuple[str, str]
) -> None:
    assert recompute(rows(*statuses), "error", None) == expected


@pytest.mark.parametrize(
    "migration_status", ["starting", "migrating", "completing", "deleting", "target:abc"]
)
@pytest.mark.parametrize("status", ["in-use", "maintenance", "detaching", "error"])
def test_recompute_keeps_the_status_while_migrating(status: str, migration_status: str) -> None:
    assert recompute({}, status, migration_status) == (status, "detached")
    assert recompute(rows("error_detaching"), status, migration_status) == (status, "detached")


@pytest.mark.parametrize("migration_status", [None, "success", "error"])
@pytest.mark.parametrize("status", ["in-use", "maintenance", "detaching", "error"])
def test_recompute_makes_available_when_not_migrating(
    status: str, migration_status: str | None
) -> None:
    assert recompute({}, status, migration_status) == ("available", "detached")


@pytest.mark.parametrize("migration_status", [None, "success", "error", "migrating"])
def test_recompute_keeps_uploading(migration_status: str | None) -> None:
    assert recompute({}, "uploading", migration_status) == ("uploading", "detached")


@pytest.mark.parametrize("status", ["uploading", "maintenance"])
def test_recompute_with_live_attachments_ignores_migration_and_upload(status: str) -> None:
    assert recompute(rows("attached"), status, "migrating") == ("in-use", "attached")
    assert recompute(rows("reserved"), status, None) == ("reserved", "reserved")


def test_recompute_leaves_its_input_alone() -> None:
    given = rows("reserved", "attached")
    copy = {k: dict(v) for k, v in given.items()}

    recompute(given, "in-use", None)

    assert given == copy


# -- sanitize_host (§3.7-5f) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host_name", "expected"),
    [
        (None, None),
        ("node1", "node1"),
        ("Compute Node_1", "compute-node-1"),
        ("a  b__c", "a--b--c"),
        ("UPPER.Example.COM", "upper.example.com"),
        ("host!@#$%^&*()+=/:,;'\"<>?name", "hostname"),
        ("tab\there", "tabhere"),
        ("..-host.example.com-..", "host.example.com"),
        ("_leading_and_trailing_", "leading-and-trailing"),
        (" spaced ", "spaced"),
        ("-_-.", ""),
        ("node✓1", "node1"),
        ("αβγ-host", "host"),
        ("\u30ce\u30fc\u30c91", "1"),  # katakana
        ("host😀name", "hostname"),
        ("h\u200bost", "host"),
    ],
)
def test_sanitize_host(host_name: str | None, expected: str | None) -> None:
    assert sanitize_host(host_name) == expected


@pytest.mark.parametrize(
    ("host_name", "expected"),
    [
        ("Café_Host", "café-host"),
        ("ÄÖÜ-ÿ", "äöü-ÿ"),
        ("ﬁle-server", "le-server"),
        ("\uff2e\uff2f\uff24\uff251", "1"),  # full-width NODE
    ],
)
def test_sanitize_host_keeps_latin_1_and_drops_everything_else(
    host_name: str, expected: str
) -> None:
    assert sanitize_host(host_name) == expected
