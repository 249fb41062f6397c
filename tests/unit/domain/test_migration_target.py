"""The migrate saga's scheduler check (`choose_migration_target`): the destination's pools,
filtered by the one placement rule (the type's ``volume_backend_name``, multiattach, room),
the freest wins, a pool already holding a copy is kept; anything else is Cinder's
NoValidBackend."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from cinderblock.domain.sagas.migrate import choose_migration_target, partial_copies
from cinderblock.domain.volume_type import MULTIATTACH_ON, VolumeType
from tests.unit.domain.given import HOST, available
from tests.unit.domain.test_placement import P

pytestmark = pytest.mark.unit


A0 = P(HOST, free_gb=500)  # the volume's own pool
A1 = P("node1@file-a#pool1", free_gb=80)
B0 = P("node1@file-b#pool0", free_gb=200, multiattach=True)
B1 = P("node1@file-b#pool1", free_gb=300)
POOLS = [A0, A1, B0, B1]


def a_type(**specs: Any) -> VolumeType:
    return VolumeType.define(
        UUID(int=9), name="t", description=None, is_public=True, extra_specs=specs
    )


def test_a_backend_gives_its_freest_pool_that_suits() -> None:
    volume = available()
    assert choose_migration_target(volume, "node1@file-b", None, POOLS).pool == B1.location
    assert choose_migration_target(volume, "node1@file-b#pool0", None, POOLS).pool == B0.location


def test_the_volume_s_own_pool_is_never_the_target() -> None:
    volume = available()
    assert choose_migration_target(volume, "node1@file-a", None, POOLS).pool == A1.location


def test_a_destination_the_type_refuses_is_no_valid_backend() -> None:
    volume = available()
    on_a = a_type(volume_backend_name="file-a")
    refused = choose_migration_target(volume, "node1@file-b", on_a, POOLS)
    assert refused.pool is None
    assert refused.refusal == (
        f"No valid backend was found. Cannot place volume {volume.vid} on node1@file-b."
    )
    assert choose_migration_target(volume, "node1@file-a", on_a, POOLS).pool == A1.location


def test_multiattach_room_and_unknown_pools() -> None:
    multi = available(multiattach=True)
    typed = a_type(multiattach=MULTIATTACH_ON)
    assert choose_migration_target(multi, "node1@file-b", typed, POOLS).pool == B0.location
    assert choose_migration_target(multi, "node1@file-b#pool1", typed, POOLS).pool is None
    big = available(size_gb=250)
    assert choose_migration_target(big, "node1@file-b", None, POOLS).pool == B1.location
    assert choose_migration_target(big, "node1@file-b#pool0", None, POOLS).pool is None
    assert choose_migration_target(big, "node1@file-b#nope", None, POOLS).pool is None


def test_a_pool_already_holding_a_copy_is_kept() -> None:
    volume = available()
    kept = choose_migration_target(volume, "node1@file-b", None, POOLS, made=[B0.location])
    assert kept.pool == B0.location


def test_partial_copies_are_the_destination_s_pools_but_the_volume_s() -> None:
    locations = [p.location for p in POOLS]
    assert partial_copies(locations, "node1@file-b", HOST) == [B0.location, B1.location]
    assert partial_copies(locations, "node1@file-a", HOST) == [A1.location]
    assert partial_copies(locations, "node1@file-a", None) == []
