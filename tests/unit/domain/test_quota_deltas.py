"""Quota delta builders of `cinderblock.domain.quota` for snapshots and retypes (volumes:
test_quota.py). Every quota delta is built there; the store only applies them."""

from __future__ import annotations

import pytest

from cinderblock.domain.quota import snapshot_deltas, type_move, volume_deltas
from cinderblock.store.retype import type_move as store_type_move
from cinderblock.store.snapshots import snapshot_deltas as store_snapshot_deltas
from tests.unit.domain.given import new_quota

pytestmark = pytest.mark.unit


def test_snapshot_deltas_count_a_snapshot_and_its_size_globally_and_per_type() -> None:
    assert snapshot_deltas(10, "lvm", count=1) == {
        "snapshots": 1,
        "snapshots_lvm": 1,
        "gigabytes": 10,
        "gigabytes_lvm": 10,
    }


def test_snapshot_deltas_of_a_removed_snapshot_are_negative() -> None:
    assert snapshot_deltas(3, "ssd", count=-1) == {
        "snapshots": -1,
        "snapshots_ssd": -1,
        "gigabytes": -3,
        "gigabytes_ssd": -3,
    }


def test_type_move_moves_the_per_type_keys_only() -> None:
    assert type_move(10, "lvm", "ssd") == {
        "volumes_ssd": 1,
        "gigabytes_ssd": 10,
        "volumes_lvm": -1,
        "gigabytes_lvm": -10,
    }


def test_a_committed_type_move_leaves_the_volume_counted_once_under_the_new_type() -> None:
    quota = new_quota()
    quota.consume(volume_deltas(10, "lvm", count=1), {}, size_gb=10, reason="create")
    quota.reserve("r", type_move(10, "lvm", "ssd"), {}, size_gb=10)
    quota.commit("r")
    used = {k: v for k, v in quota.in_use.items() if v}
    assert used == {"volumes": 1, "gigabytes": 10, "volumes_ssd": 1, "gigabytes_ssd": 10}


def test_the_old_names_in_the_store_are_the_domain_functions() -> None:
    assert store_type_move is type_move
    assert store_snapshot_deltas is snapshot_deltas
