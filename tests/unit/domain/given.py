"""Builders shared by the domain tests: aggregates brought to a state by their own events.

A builder's events are collected before it returns (they are the "given" history), so a
test's ``collect_events()`` yields only what its own command recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from cinderblock.domain.quota import ProjectQuota
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume

VOLUME_ID = UUID("6d1f0c8e-5b0a-4c55-9d43-1f2e3a4b5c6d")
HOST = "node1@file-a#pool0"
PROJECT = "project-a"
ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


def volume_fields(**overrides: Any) -> dict[str, Any]:
    """The ``Created`` fields of a 10 GB ``lvm`` volume, with ``overrides``."""
    fields: dict[str, Any] = {
        "project_id": PROJECT,
        "user_id": "user-a",
        "name": "vol-1",
        "description": "a test volume",
        "size_gb": 10,
        "availability_zone": "nova",
        "volume_type_id": "type-id-lvm",
        "volume_type_name": "lvm",
        "metadata": {"purpose": "test"},
        "bootable": False,
        "multiattach": False,
    }
    return fields | overrides


def creating(**overrides: Any) -> Volume:
    """Given: Created (status ``creating``, never placed)."""
    volume = Volume.create(VOLUME_ID, **volume_fields(**overrides))
    volume.collect_events()
    return volume


def available(**overrides: Any) -> Volume:
    """Given: Created, CreateCompleted on ``HOST``."""
    volume = creating(**overrides)
    volume.complete_create(HOST)
    volume.collect_events()
    return volume


def errored_on_create(**overrides: Any) -> Volume:
    """Given: Created, CreateFailed (status ``error``, no host)."""
    volume = creating(**overrides)
    volume.fail_create("no valid backend")
    volume.collect_events()
    return volume


def extending(new_size_gb: int = 20, *, reservation_id: str = "res-1") -> tuple[Volume, int]:
    """Given: an available 10 GB volume, ExtendRequested. Returns it and the request's
    version (the ExtendRequested event's ``originator_version``, as the saga sees it)."""
    volume = available()
    volume.request_extend(new_size_gb, in_use_allowed=False, reservation_id=reservation_id)
    (requested,) = volume.collect_events()
    return volume, requested.originator_version


def deleting() -> Volume:
    """Given: an available volume, DeleteRequested (status ``deleting``)."""
    volume = available()
    volume.request_delete()
    volume.collect_events()
    return volume


def in_state(volume: Volume, status: Status, **attributes: Any) -> Volume:
    """Put ``volume`` in a state no v1 event leads to (``in-use``, ``maintenance``,
    attached, migrating ...): the domain has no attach/migrate events yet, but its rules
    already read those fields. Nothing is recorded."""
    volume.status = status
    for attachment_id in attributes.pop("attachment_ids", []):
        volume.attachments[attachment_id] = {
            "instance_uuid": None,
            "attached_host": "h",
            "mountpoint": "/dev/vdb",
            "attach_status": "attached",
            "attach_mode": "rw",
            "attach_time": None,
        }
    for name, value in attributes.items():
        setattr(volume, name, value)
    return volume


def new_quota() -> ProjectQuota:
    """Given: Created for ``PROJECT`` (nothing used or reserved)."""
    quota = ProjectQuota.start(PROJECT)
    quota.collect_events()
    return quota


def recorded(events: Sequence[Any]) -> list[tuple[type, dict[str, Any]]]:
    """Each event's class and its own fields (the envelope left out)."""
    return [
        (
            type(e),
            {f.name: getattr(e, f.name) for f in dataclasses.fields(e) if f.name not in ENVELOPE},
        )
        for e in events
    ]


def replay(events: Sequence[Any]) -> Any:
    """Rebuild an aggregate from its events as the repository does."""
    aggregate = events[0].mutate(None)
    for e in events[1:]:
        aggregate = e.mutate(aggregate)
    return aggregate


def state(aggregate: Any) -> dict[str, Any]:
    """Everything an aggregate holds apart from its not-yet-collected events."""
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


@dataclasses.dataclass
class Story:
    """A volume and every event it has recorded so far, so that a test can replay it."""

    volume: Volume
    events: list[Any]

    def new_events(self) -> list[Any]:
        """What the commands since the last call recorded (now part of the history)."""
        new = self.volume.collect_events()
        self.events.extend(new)
        return new

    def rebuilt(self) -> Volume:
        """The volume rebuilt from its whole history, as the repository does."""
        rebuilt: Volume = replay(self.events)
        return rebuilt


def story(**overrides: Any) -> Story:
    """Given: Created, CreateCompleted on ``HOST`` (``available``), history kept."""
    volume = Volume.create(VOLUME_ID, **volume_fields(**overrides))
    volume.complete_create(HOST)
    return Story(volume, volume.collect_events())


IMAGE_ID = "71543ced-a8af-45b6-a5c4-a46282108a90"
GIB = 2**30


def image(**overrides: Any) -> dict[str, Any]:
    """An active 1 GiB raw image as the image service shows it (Glance v2 shape)."""
    return {
        "id": IMAGE_ID,
        "name": "cirros",
        "status": "active",
        "size": GIB,
        "disk_format": "raw",
        "container_format": "bare",
        "min_disk": 0,
        "min_ram": 0,
        "checksum": None,
        "os_hash_algo": "sha256",
        "os_hash_value": "ab" * 32,
        "visibility": "private",
        "protected": False,
        "hw_disk_bus": "virtio",
        **overrides,
    } | ({"virtual_size": overrides["virtual_size"]} if "virtual_size" in overrides else {})
