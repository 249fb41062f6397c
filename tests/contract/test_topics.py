"""Every topic ever stored stays resolvable, and every event class is listed before it ships."""

from __future__ import annotations

import inspect

import pytest
from eventsourcing.domain import CanMutateAggregate
from eventsourcing.utils import get_topic, resolve_topic

from cinderblock.domain.quota import ProjectQuota
from cinderblock.domain.snapshot import Snapshot
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_type import TypeNameClaim, VolumeType
from cinderblock.wire.envelope import event_type
from tests.helpers.topics import STORED, TOPICS_FILE


def event_classes() -> set[type]:
    """Every event class of the aggregates: eventsourcing re-declares the events of mixins
    on the aggregate, and those (``Volume.Attached``) are what gets stored."""
    return {
        obj
        for aggregate in (Volume, ProjectQuota, Snapshot, VolumeType, TypeNameClaim)
        for obj in vars(aggregate).values()
        if inspect.isclass(obj)
        and issubclass(obj, CanMutateAggregate)
        and obj.__name__ != "Event"  # the per-aggregate base class, never stored
        and obj.__module__.startswith("cinderblock.")
    }


@pytest.mark.parametrize("topic", STORED)
def test_every_stored_topic_resolves_to_an_event_class(topic: str) -> None:
    cls = resolve_topic(topic)
    assert issubclass(cls, CanMutateAggregate)


def test_every_event_class_is_listed() -> None:
    missing = sorted({get_topic(cls) for cls in event_classes()} - set(STORED))
    assert not missing, f"add these to {TOPICS_FILE.name}: {missing}"


@pytest.mark.parametrize("topic", STORED)
def test_every_topic_maps_to_a_published_aggregate(topic: str) -> None:
    """The relay names subjects after the aggregate: an event whose holder it does not know
    would stop it."""
    assert event_type(topic.rpartition(":")[2]).split(".")[0] in {
        "volume",
        "snapshot",
        "type",
        "quota",
    }
