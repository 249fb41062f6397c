"""Pool placement (`cinderblock.domain.placement`): suits the type, holds the size, most free
space; a pool the data already sits in is kept; excluded pools are never chosen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest

from cinderblock.domain.placement import backend_of, choose_pool, suitable, suits
from cinderblock.domain.volume_type import MULTIATTACH_ON, VolumeType

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class P:
    location: str
    free_gb: int
    multiattach: bool = False


A0 = P("node1@file-a#pool0", free_gb=50)
A1 = P("node1@file-a#pool1", free_gb=80)
B0 = P("node1@file-b#pool0", free_gb=200, multiattach=True)
POOLS = [A0, A1, B0]


def a_type(**specs: Any) -> VolumeType:
    return VolumeType.define(
        UUID(int=7), name="t", description=None, is_public=True, extra_specs=specs
    )


def test_backend_of_cuts_the_pool() -> None:
    assert backend_of("node1@file-a#pool0") == "node1@file-a"


def test_any_pool_suits_no_type_or_a_type_without_backend() -> None:
    assert suitable(POOLS, None, False) == POOLS
    assert suitable(POOLS, a_type(), False) == POOLS


def test_a_backend_name_limits_the_pools() -> None:
    vtype = a_type(volume_backend_name="file-a")
    assert suitable(POOLS, vtype, False) == [A0, A1]
    assert not suits(B0, vtype, False)


def test_a_multiattach_volume_needs_a_multiattach_pool() -> None:
    assert suitable(POOLS, None, True) == [B0]
    assert suitable(POOLS, a_type(multiattach=MULTIATTACH_ON), True) == [B0]


def test_the_freest_suitable_pool_wins() -> None:
    assert choose_pool(POOLS, None, 10, False) == B0.location
    assert choose_pool(POOLS, a_type(volume_backend_name="file-a"), 10, False) == A1.location


def test_a_pool_too_small_is_skipped() -> None:
    vtype = a_type(volume_backend_name="file-a")
    assert choose_pool(POOLS, vtype, 60, False) == A1.location
    assert choose_pool(POOLS, vtype, 81, False) is None


def test_the_size_may_fill_a_pool_exactly() -> None:
    assert choose_pool([A0], None, 50, False) == A0.location


def test_the_first_of_equals_wins() -> None:
    twin = P("node1@file-a#pool9", free_gb=80)
    assert choose_pool([A1, twin], None, 1, False) == A1.location
    assert choose_pool([twin, A1], None, 1, False) == twin.location


def test_nothing_suits() -> None:
    assert choose_pool(POOLS, a_type(volume_backend_name="file-z"), 1, False) is None
    assert choose_pool([A0, A1], None, 1, True) is None
    assert choose_pool([], None, 1, False) is None


def test_excluded_pools_are_never_chosen() -> None:
    assert choose_pool(POOLS, None, 10, False, exclude={B0.location}) == A1.location
    assert choose_pool(POOLS, None, 10, False, exclude={B0.location, A1.location}) == A0.location


def test_a_kept_pool_that_suits_wins_whatever_its_free_space() -> None:
    assert choose_pool(POOLS, None, 500, False, keep=[A0.location]) == A0.location


def test_the_first_kept_pool_that_suits_wins() -> None:
    vtype = a_type(volume_backend_name="file-a")
    kept = [B0.location, A1.location, A0.location]
    assert choose_pool(POOLS, vtype, 10, False, keep=kept) == A1.location


def test_a_kept_pool_that_does_not_suit_is_left_for_the_freest() -> None:
    vtype = a_type(volume_backend_name="file-b")
    assert choose_pool(POOLS, vtype, 10, False, keep=[A0.location]) == B0.location


def test_a_kept_pool_the_backend_no_longer_reports_is_ignored() -> None:
    assert choose_pool(POOLS, None, 10, False, keep=["gone@x#p"]) == B0.location


def test_keep_beats_exclude_for_a_retype_in_place() -> None:
    """A retype keeps the volume's pool when it suits; only a move excludes it."""
    here = A0.location
    assert choose_pool(POOLS, None, 10, False, exclude={here}, keep=[here]) == here
    vtype = a_type(volume_backend_name="file-b")
    assert choose_pool(POOLS, vtype, 10, False, exclude={here}, keep=[here]) == B0.location
