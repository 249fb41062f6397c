"""os-migrate_volume_completion on two volumes (spec §3.13, ``domain/swap.py``): Nova's swap
moves the old volume's attachments to the new one (Cinder's ``detach`` then ``attach`` per
attachment); a completion of a migration answers Cinder's 400s; ``error`` moves nothing."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from cinderblock.domain.errors import InvalidInputError, InvalidVolumeError
from cinderblock.domain.status import AttachStatus, Status
from cinderblock.domain.swap import swap_attachments, swaps_attachments
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import HOST, Story, recorded, replay, state, story, volume_fields

pytestmark = pytest.mark.unit

NEW_ID = UUID("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
INSTANCE = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"


def new_volume(**overrides: Any) -> Story:
    """Given: the swap's destination, available on ``HOST`` (history kept)."""
    volume = Volume.create(NEW_ID, **volume_fields(name="new", **overrides))
    volume.complete_create(HOST)
    return Story(volume, volume.collect_events())


def attached_old(*, instance: str = INSTANCE, detaching: bool = True) -> Story:
    """Given: the old volume attached to ``instance`` (legacy attach), then Nova's swap
    began detaching it."""
    s = story()
    s.volume.attach(
        "att-old", mountpoint="/dev/vdb", mode="rw", instance_uuid=instance, host_name="cmp-1"
    )
    if detaching:
        s.volume.begin_detaching()
    s.new_events()
    return s


def assert_replays(*stories: Story) -> None:
    for s in stories:
        s.new_events()
        assert state(s.rebuilt()) == state(s.volume)


def test_legacy_swap_detaches_the_old_volume_and_attaches_the_new_one() -> None:
    old, new = attached_old(), new_volume()
    new.volume.reserve()  # Nova's legacy swap reserves the new volume (attaching)
    new.new_events()

    assert swaps_attachments(old.volume, new.volume, error=False) is True
    swap_attachments(old.volume, new.volume, ["att-new"])

    assert recorded(old.new_events()) == [
        (
            Volume.Detached,
            {"attachment_id": "att-old", "status": "available", "attach_status": "detached"},
        )
    ]
    [attached] = new.new_events()
    assert recorded([attached]) == [
        (
            Volume.Attached,
            {
                "attachment_id": "att-new",
                "instance_uuid": INSTANCE,
                "attached_host": "cmp-1",
                "mountpoint": "/dev/vdb",
                "mode": "rw",
            },
        )
    ]
    assert (old.volume.status, old.volume.attach_status) == (
        Status.AVAILABLE,
        AttachStatus.DETACHED,
    )
    assert old.volume.attachments == {}
    assert (new.volume.status, new.volume.attach_status) == (Status.IN_USE, AttachStatus.ATTACHED)
    assert new.volume.attachments == {
        "att-new": {
            "instance_uuid": INSTANCE,
            "attached_host": "cmp-1",
            "mountpoint": "/dev/vdb",
            "attach_status": "attached",
            "attach_mode": "rw",
            "attach_time": attached.timestamp.isoformat(),
        }
    }
    assert new.volume.admin_metadata == {"readonly": "False", "attached_mode": "rw"}
    assert_replays(old, new)


def test_swap_of_a_read_only_attachment_attaches_read_write() -> None:
    """Cinder passes ``'rw'`` whatever mode the old attachment had."""
    old, new = story(), new_volume()
    old.volume.attach(
        "att-old", mountpoint="/dev/vdc", mode="ro", instance_uuid=INSTANCE, host_name=None
    )
    old.new_events()

    swap_attachments(old.volume, new.volume, ["att-new"])

    assert new.volume.attachments["att-new"]["attach_mode"] == "rw"
    assert old.volume.status is Status.AVAILABLE


def test_a_new_volume_reserved_for_the_instance_keeps_its_attachment() -> None:
    """Reserved through the attachments API for the same instance: Cinder's
    ``attach_volume`` finds that row by instance and only sets the volume in-use."""
    old, new = attached_old(), new_volume()
    new.volume.create_attachment("att-reserved", instance_uuid=INSTANCE, mode=None)
    new.new_events()
    reserved_row = dict(new.volume.attachments["att-reserved"])

    swap_attachments(old.volume, new.volume, ["att-unused"])

    assert recorded(new.new_events()) == [(Volume.Unreserved, {"status": "in-use"})]
    assert new.volume.attachments == {"att-reserved": reserved_row}
    assert new.volume.status is Status.IN_USE
    assert old.volume.status is Status.AVAILABLE
    assert_replays(old, new)


def test_a_host_attachment_moves_by_host() -> None:
    old, new = story(), new_volume()
    old.volume.attach("att-old", mountpoint="/mnt", mode="rw", instance_uuid=None, host_name="h1")
    old.new_events()

    swap_attachments(old.volume, new.volume, ["att-new"])

    row = new.volume.attachments["att-new"]
    assert (row["instance_uuid"], row["attached_host"], row["mountpoint"]) == (None, "h1", "/mnt")


def test_every_attachment_of_a_multiattach_volume_moves() -> None:
    old, new = story(multiattach=True), new_volume(multiattach=True)
    for n, instance in enumerate((INSTANCE, OTHER)):
        old.volume.attach(
            f"att-{n}", mountpoint="/dev/vdb", mode="rw", instance_uuid=instance, host_name=None
        )
    old.new_events()

    swap_attachments(old.volume, new.volume, ["new-0", "new-1"])

    assert [type(e).__name__ for e in old.new_events()] == ["Detached", "Detached"]
    assert {r["instance_uuid"] for r in new.volume.attachments.values()} == {INSTANCE, OTHER}
    assert set(new.volume.attachments) == {"new-0", "new-1"}
    assert (old.volume.status, new.volume.status) == (Status.AVAILABLE, Status.IN_USE)
    assert_replays(old, new)


def test_two_attachments_cannot_move_to_a_volume_without_multiattach() -> None:
    old, new = story(multiattach=True), new_volume()
    for n, instance in enumerate((INSTANCE, OTHER)):
        old.volume.attach(
            f"att-{n}", mountpoint="/dev/vdb", mode="rw", instance_uuid=instance, host_name=None
        )
    old.new_events()

    with pytest.raises(InvalidVolumeError, match="multiple attachments are not enabled"):
        swap_attachments(old.volume, new.volume, ["new-0", "new-1"])


def test_a_read_only_new_volume_refuses_the_read_write_attach() -> None:
    old, new = attached_old(), new_volume()
    new.volume.update_readonly_flag(True)
    new.new_events()

    with pytest.raises(InvalidInputError, match="Invalid attaching mode 'rw'"):
        swap_attachments(old.volume, new.volume, ["att-new"])


@pytest.mark.parametrize("error", [True, False])
def test_nothing_to_move_without_attachments_or_on_error(error: bool) -> None:
    old = attached_old() if error else story()
    new = new_volume()

    assert swaps_attachments(old.volume, new.volume, error=error) is False


def test_the_same_volume_twice_is_detached_and_attached_again() -> None:
    old = attached_old()

    swap_attachments(old.volume, old.volume, ["att-again"])

    assert list(old.volume.attachments) == ["att-again"]
    assert old.volume.status is Status.IN_USE
    assert_replays(old)


@pytest.mark.parametrize(
    ("source_status", "target_status", "message"),
    [
        ("migrating", None, "Destination volume not mid-migration."),
        ("success", None, "Destination volume not mid-migration."),
        (None, "migrating", "Source volume not mid-migration."),
        (
            "migrating",
            "success",
            f"Destination has migration_status success, expected target:{story().volume.vid}.",
        ),
    ],
)
def test_a_completion_of_a_migration_is_refused(
    source_status: str | None, target_status: str | None, message: str
) -> None:
    old, new = attached_old(), new_volume()
    old.volume.migration_status = source_status
    new.volume.migration_status = target_status

    for error in (False, True):
        with pytest.raises(InvalidVolumeError) as refused:
            swaps_attachments(old.volume, new.volume, error=error)
        assert refused.value.message == message
    assert old.volume.collect_events() == new.volume.collect_events() == []


def test_one_id_is_needed_per_attachment() -> None:
    old, new = attached_old(), new_volume()

    with pytest.raises(ValueError, match="1 attachments to move, 0 ids given"):
        swap_attachments(old.volume, new.volume, [])
    assert replay(old.events).attachments == old.volume.attachments
