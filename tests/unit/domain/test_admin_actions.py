"""Admin and image-metadata actions: os-reset_status (spec §3.2, with the divergences of
docs/decisions.md), os-set_image_metadata (§3.4) and os-unset_image_metadata (§3.5)."""

from __future__ import annotations

from typing import Any

import pytest

from cinderblock.domain.errors import (
    InvalidVolumeError,
    MetadataNotFoundError,
    VolumeError,
)
from cinderblock.domain.status import AttachStatus, Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import (
    Story,
    available,
    in_state,
    recorded,
    state,
    story,
)

pytestmark = pytest.mark.unit

I1 = "11111111-1111-4111-8111-111111111111"
I2 = "22222222-2222-4222-8222-222222222222"

# The statuses os-reset_status may write (spec §3.2) other than the refused ones and in-use.
SETTABLE = [
    "creating",
    "available",
    "error",
    "error_deleting",  # Cinder meant to refuse it but accepts it (missing comma)
    "detaching",  # likewise
    "error_managing",
    "managing",
    "attaching",
    "maintenance",
    "restoring-backup",
    "error_restoring",
    "reserved",
    "awaiting-transfer",
    "backing-up",
    "error_backing-up",
    "error_extending",
    "downloading",
    "uploading",
    "retyping",
    "extending",
]
REFUSED = ["deleting"]
IN_USE_REFUSED = "Cannot reset-state to in-use because volume does not have any attachments."


def reset(
    volume: Volume,
    status: str | None = None,
    attach_status: str | None = None,
    **migration: str | None,
) -> None:
    """os-reset_status; ``migration_status=...`` given only when passed."""
    volume.reset_status(
        status=status,
        attach_status=attach_status,
        migration_status=migration.get("migration_status"),
        migration_given="migration_status" in migration,
    )


def names(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def attached(*instances: str) -> Story:
    """Given: a multiattach volume attached to ``instances`` (att-1, att-2 ...)."""
    s = story(multiattach=True)
    for n, instance in enumerate(instances, start=1):
        s.volume.reserve()
        s.volume.attach(
            f"att-{n}", mountpoint="/dev/vdb", mode="rw", instance_uuid=instance, host_name=None
        )
    s.new_events()
    return s


def assert_replays(s: Story) -> None:
    """The whole history (including what is still pending) rebuilds the same volume."""
    s.new_events()
    assert state(s.rebuilt()) == state(s.volume)


def reset_event(
    status: str,
    attach_status: str = "detached",
    migration_status: str | None = None,
    removed: list[str] | None = None,
) -> tuple[type, dict[str, Any]]:
    return (
        Volume.StatusReset,
        {
            "status": status,
            "attach_status": attach_status,
            "migration_status": migration_status,
            "removed_attachments": removed or [],
        },
    )


# -- os-reset_status: accepted ----------------------------------------------------------------


def test_reset_status_writes_the_given_status() -> None:
    s = story()

    reset(s.volume, "error")

    events = s.new_events()
    assert names(events) == ["StatusReset"]
    assert recorded(events) == [reset_event("error")]
    assert type(events[0].status) is str
    assert type(events[0].attach_status) is str
    assert s.volume.status is Status.ERROR
    assert s.volume.attach_status is AttachStatus.DETACHED
    assert s.volume.migration_status is None
    assert_replays(s)


@pytest.mark.parametrize("target", SETTABLE)
def test_reset_status_accepts_any_transition(target: str) -> None:
    """No check of the current status (§3.2-6)."""
    volume = in_state(available(), Status.ERROR_UNMANAGING)

    reset(volume, target)

    assert recorded(volume.collect_events()) == [reset_event(target)]
    assert volume.status == target
    assert isinstance(volume.status, Status)


@pytest.mark.parametrize("current", [s.value for s in Status])
def test_reset_status_from_any_status(current: str) -> None:
    volume = in_state(available(), Status(current))

    reset(volume, "available")

    assert volume.status is Status.AVAILABLE
    assert names(volume.collect_events()) == ["StatusReset"]


def test_reset_status_from_error_back_to_available() -> None:
    s = story()
    reset(s.volume, "error")
    reset(s.volume, "available")

    assert recorded(s.new_events()) == [reset_event("error"), reset_event("available")]
    assert s.volume.status is Status.AVAILABLE
    assert_replays(s)


def test_reset_status_to_in_use_with_an_attachment() -> None:
    s = attached(I1)
    reset(s.volume, "error")
    s.new_events()

    reset(s.volume, "in-use")

    assert recorded(s.new_events()) == [reset_event("in-use", "attached")]
    assert s.volume.status is Status.IN_USE
    assert list(s.volume.attachments) == ["att-1"]
    assert_replays(s)


@pytest.mark.parametrize("row_status", ["attached", "attaching", "reserved", "error_attaching"])
def test_reset_status_to_in_use_counts_any_attachment_not_detached(row_status: str) -> None:
    volume = in_state(available(), Status.ERROR, attachment_ids=["att-1"])
    volume.attachments["att-1"]["attach_status"] = row_status

    reset(volume, "in-use")

    assert volume.status is Status.IN_USE


def test_reset_attach_status_alone_keeps_the_status() -> None:
    s = story()

    reset(s.volume, attach_status="attached")

    assert recorded(s.new_events()) == [reset_event("available", "attached")]
    assert s.volume.status is Status.AVAILABLE
    assert s.volume.attach_status is AttachStatus.ATTACHED
    assert_replays(s)


def test_reset_migration_status_alone() -> None:
    s = story()

    reset(s.volume, migration_status="migrating")

    assert recorded(s.new_events()) == [reset_event("available", migration_status="migrating")]
    assert s.volume.migration_status == "migrating"
    assert s.volume.status is Status.AVAILABLE
    assert_replays(s)


def test_reset_migration_status_to_none_clears_it() -> None:
    s = story()
    reset(s.volume, migration_status="error")
    s.new_events()

    reset(s.volume, migration_status=None)

    assert recorded(s.new_events()) == [reset_event("available", migration_status=None)]
    assert s.volume.migration_status is None
    assert_replays(s)


def test_migration_status_not_given_is_kept() -> None:
    s = story()
    reset(s.volume, migration_status="success")
    s.new_events()

    reset(s.volume, "error")

    assert recorded(s.new_events()) == [reset_event("error", migration_status="success")]
    assert s.volume.migration_status == "success"


def test_reset_all_three_at_once() -> None:
    s = story()

    reset(s.volume, "maintenance", "attached", migration_status="completing")

    assert recorded(s.new_events()) == [
        reset_event("maintenance", "attached", migration_status="completing")
    ]
    assert (s.volume.status, s.volume.attach_status, s.volume.migration_status) == (
        Status.MAINTENANCE,
        AttachStatus.ATTACHED,
        "completing",
    )
    assert_replays(s)


# -- os-reset_status: attach_status detached removes the attachments ---------------------------


def test_reset_to_detached_removes_every_attachment_and_recomputes() -> None:
    s = attached(I1, I2)

    reset(s.volume, attach_status="detached")

    events = s.new_events()
    assert recorded(events) == [reset_event("available", "detached", removed=["att-1", "att-2"])]
    assert s.volume.attachments == {}
    assert s.volume.status is Status.AVAILABLE
    assert s.volume.attach_status is AttachStatus.DETACHED
    assert s.volume.admin_metadata == {"readonly": "False"}  # attached_mode removed
    assert_replays(s)


def test_a_status_given_with_detached_sticks() -> None:
    """decisions.md: Cinder's recomputation would override ``error`` with ``available``."""
    s = attached(I1)

    reset(s.volume, "error", "detached")

    assert recorded(s.new_events()) == [reset_event("error", "detached", removed=["att-1"])]
    assert s.volume.status is Status.ERROR
    assert s.volume.attach_status is AttachStatus.DETACHED
    assert s.volume.attachments == {}
    assert_replays(s)


def test_reset_to_detached_keeps_the_status_while_migrating() -> None:
    s = attached(I1)
    s.volume.start_migration("node2@file-b", force_host_copy=False, lock_volume=False)
    s.new_events()

    reset(s.volume, attach_status="detached")

    assert recorded(s.new_events()) == [
        reset_event("in-use", "detached", migration_status="starting", removed=["att-1"])
    ]
    assert s.volume.status is Status.IN_USE
    assert s.volume.attachments == {}
    assert_replays(s)


def test_reset_to_detached_uses_a_migration_status_given_in_the_same_request() -> None:
    s = attached(I1)

    reset(s.volume, attach_status="detached", migration_status="migrating")

    assert recorded(s.new_events()) == [
        reset_event("in-use", "detached", migration_status="migrating", removed=["att-1"])
    ]
    assert s.volume.status is Status.IN_USE


def test_reset_to_detached_keeps_uploading() -> None:
    volume = in_state(available(), Status.UPLOADING, attachment_ids=["att-1"])

    reset(volume, attach_status="detached")

    assert recorded(volume.collect_events()) == [
        reset_event("uploading", "detached", removed=["att-1"])
    ]
    assert volume.status is Status.UPLOADING
    assert volume.attachments == {}


def test_reset_to_detached_without_attachments_keeps_the_status() -> None:
    s = story()
    reset(s.volume, "error", "attached")
    s.new_events()

    reset(s.volume, attach_status="detached")

    assert recorded(s.new_events()) == [reset_event("error", "detached")]
    assert s.volume.status is Status.ERROR
    assert s.volume.attach_status is AttachStatus.DETACHED
    assert_replays(s)


def test_reset_to_attached_keeps_the_attachments() -> None:
    s = attached(I1)

    reset(s.volume, "error", "attached")

    assert recorded(s.new_events()) == [reset_event("error", "attached")]
    assert list(s.volume.attachments) == ["att-1"]
    assert s.volume.admin_metadata == {"readonly": "False", "attached_mode": "rw"}


# -- os-reset_status: refused -----------------------------------------------------------------


@pytest.mark.parametrize("target", REFUSED)
def test_reset_status_refuses_statuses_only_the_service_sets(target: str) -> None:
    """``deleting``, with Cinder's message."""
    s = attached(I1)
    before = state(s.volume)

    with pytest.raises(VolumeError) as raised:
        reset(s.volume, target, "detached", migration_status="error")

    assert type(raised.value) is VolumeError
    assert raised.value.message == f"Cannot reset-state to {target}"
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_reset_status_to_in_use_without_attachments_is_refused() -> None:
    s = story()
    before = state(s.volume)

    with pytest.raises(VolumeError) as raised:
        reset(s.volume, "in-use")

    assert type(raised.value) is VolumeError
    assert raised.value.message == IN_USE_REFUSED
    assert s.volume.collect_events() == []
    assert state(s.volume) == before


def test_reset_status_to_in_use_with_only_detached_rows_is_refused() -> None:
    volume = in_state(available(), Status.ERROR, attachment_ids=["att-1"])
    volume.attachments["att-1"]["attach_status"] = "detached"

    with pytest.raises(VolumeError, match="does not have any attachments"):
        reset(volume, "in-use", attach_status="attached")

    assert volume.collect_events() == []
    assert volume.status is Status.ERROR


def test_refused_target_is_checked_before_the_in_use_rule() -> None:
    volume = available()

    with pytest.raises(VolumeError, match=r"^Cannot reset-state to deleting$"):
        reset(volume, "deleting")

    assert volume.collect_events() == []


def test_reset_to_in_use_and_detached_cannot_leave_in_use_without_attachments() -> None:
    s = attached(I1)

    with pytest.raises(VolumeError, match="does not have any attachments"):
        reset(s.volume, "in-use", "detached")

    assert s.volume.collect_events() == []


# -- os-set_image_metadata (§3.4) -------------------------------------------------------------


def test_set_image_metadata_records_the_given_keys_and_returns_all_of_them() -> None:
    s = story()

    result = s.volume.set_image_metadata({"os_distro": "ubuntu", "hw_disk_bus": "scsi"})

    events = s.new_events()
    assert names(events) == ["ImageMetadataSet"]
    assert recorded(events) == [
        (Volume.ImageMetadataSet, {"metadata": {"os_distro": "ubuntu", "hw_disk_bus": "scsi"}})
    ]
    assert result == {"os_distro": "ubuntu", "hw_disk_bus": "scsi"}
    assert s.volume.image_metadata == {"os_distro": "ubuntu", "hw_disk_bus": "scsi"}
    assert s.volume.metadata == {"purpose": "test"}  # user metadata is another thing
    assert_replays(s)


def test_set_image_metadata_upserts_and_never_deletes() -> None:
    s = story()
    s.volume.set_image_metadata({"a": "1", "b": "2"})
    s.new_events()

    result = s.volume.set_image_metadata({"b": "two", "B": "upper", "c": "3"})

    assert recorded(s.new_events()) == [
        (Volume.ImageMetadataSet, {"metadata": {"b": "two", "B": "upper", "c": "3"}})
    ]
    assert result == {"a": "1", "b": "two", "B": "upper", "c": "3"}
    assert s.volume.image_metadata == result
    assert_replays(s)


def test_set_image_metadata_accepts_long_values() -> None:
    volume = available()

    volume.set_image_metadata({"k": "x" * 65535})

    assert volume.image_metadata == {"k": "x" * 65535}


def test_set_image_metadata_copies_in_and_out() -> None:
    volume = available()
    given = {"a": "1"}

    result = volume.set_image_metadata(given)
    given["a"] = "changed"
    result["b"] = "added"

    (event,) = volume.collect_events()
    assert event.metadata == {"a": "1"}
    assert volume.image_metadata == {"a": "1"}


def test_set_empty_image_metadata_records_nothing_and_returns_all() -> None:
    s = story()
    s.volume.set_image_metadata({"a": "1"})
    s.new_events()
    before = state(s.volume)

    assert s.volume.set_image_metadata({}) == {"a": "1"}

    assert s.volume.collect_events() == []
    assert state(s.volume) == before


@pytest.mark.parametrize(
    "status",
    [s for s in Status if s not in (Status.MAINTENANCE, Status.UPLOADING)],
    ids=lambda s: s.value,
)
def test_set_image_metadata_in_any_other_status(status: Status) -> None:
    volume = in_state(available(), status)

    assert volume.set_image_metadata({"a": "1"}) == {"a": "1"}

    assert names(volume.collect_events()) == ["ImageMetadataSet"]
    assert volume.status is status


@pytest.mark.parametrize("status", [Status.MAINTENANCE, Status.UPLOADING], ids=lambda s: s.value)
@pytest.mark.parametrize("metadata", [{"a": "1"}, {}])
def test_set_image_metadata_refused_in_maintenance_or_uploading(
    status: Status, metadata: dict[str, str]
) -> None:
    volume = in_state(available(), status)
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.set_image_metadata(metadata)

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == (
        f"Updating volume metadata is not allowed for volumes in {status.value} status."
    )
    assert volume.collect_events() == []
    assert state(volume) == before


# -- os-unset_image_metadata (§3.5) -----------------------------------------------------------


def test_unset_image_metadata_removes_one_key() -> None:
    s = story()
    s.volume.set_image_metadata({"a": "1", "b": "2"})
    s.new_events()

    s.volume.unset_image_metadata("a")

    events = s.new_events()
    assert names(events) == ["ImageMetadataUnset"]
    assert recorded(events) == [(Volume.ImageMetadataUnset, {"key": "a"})]
    assert s.volume.image_metadata == {"b": "2"}
    assert_replays(s)


def test_unset_the_last_key_leaves_no_image_metadata() -> None:
    s = story()
    s.volume.set_image_metadata({"a": "1"})
    s.volume.unset_image_metadata("a")

    assert names(s.new_events()) == ["ImageMetadataSet", "ImageMetadataUnset"]
    assert s.volume.image_metadata == {}
    assert_replays(s)


@pytest.mark.parametrize("existing", [{}, {"a": "1"}, {"B": "1"}])
def test_unset_of_an_absent_key_is_not_found(existing: dict[str, str]) -> None:
    volume = available()
    volume.image_metadata.update(existing)
    before = state(volume)

    with pytest.raises(MetadataNotFoundError) as raised:
        volume.unset_image_metadata("b")

    assert isinstance(raised.value, VolumeError)
    assert raised.value.code == "metadata_not_found"
    assert raised.value.message == (
        f"Glance metadata for volume/snapshot {volume.vid} cannot be found."
    )
    assert volume.collect_events() == []
    assert state(volume) == before


@pytest.mark.parametrize("status", [Status.MAINTENANCE, Status.UPLOADING], ids=lambda s: s.value)
def test_unset_of_an_absent_key_is_not_found_before_the_status_check(status: Status) -> None:
    volume = in_state(available(), status)

    with pytest.raises(MetadataNotFoundError):
        volume.unset_image_metadata("a")

    assert volume.collect_events() == []


@pytest.mark.parametrize("status", [Status.MAINTENANCE, Status.UPLOADING], ids=lambda s: s.value)
def test_unset_image_metadata_refused_in_maintenance_or_uploading(status: Status) -> None:
    volume = in_state(available(), status, image_metadata={"a": "1"})
    before = state(volume)

    with pytest.raises(InvalidVolumeError) as raised:
        volume.unset_image_metadata("a")

    assert type(raised.value) is InvalidVolumeError
    assert raised.value.message == (
        f"Deleting volume metadata is not allowed for volumes in {status.value} status."
    )
    assert volume.collect_events() == []
    assert state(volume) == before


# -- replay -----------------------------------------------------------------------------------


def test_replay_of_a_mixed_admin_history() -> None:
    s = attached(I1, I2)
    reset(s.volume, "error", migration_status="error")
    s.volume.set_image_metadata({"a": "1", "b": "2"})
    reset(s.volume, attach_status="detached", migration_status=None)
    s.volume.unset_image_metadata("b")
    reset(s.volume, "available")

    assert names(s.new_events()) == [
        "StatusReset",
        "ImageMetadataSet",
        "StatusReset",
        "ImageMetadataUnset",
        "StatusReset",
    ]
    assert s.volume.attachments == {}
    assert s.volume.image_metadata == {"a": "1"}
    assert (s.volume.status, s.volume.attach_status, s.volume.migration_status) == (
        Status.AVAILABLE,
        AttachStatus.DETACHED,
        None,
    )
    assert_replays(s)


def refuse(*_: Any, **__: Any) -> Any:
    pytest.fail("replay ran a decision")


def test_replay_runs_no_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    s = attached(I1)
    reset(s.volume, "error", "detached")
    s.volume.set_image_metadata({"a": "1"})
    s.volume.unset_image_metadata("a")
    s.new_events()
    for name in ("reset_status", "set_image_metadata", "unset_image_metadata"):
        monkeypatch.setattr(Volume, name, refuse)
    monkeypatch.setattr("cinderblock.domain.admin.recompute", refuse)

    assert_replays(s)
