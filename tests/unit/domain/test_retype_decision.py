"""The retype saga's decision (`cinderblock.domain.sagas.retype.decide_retype`): in place,
move to a pool, re-encrypt into a pool, or refuse with Cinder's reason; nothing when the
retype is no longer pending."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest

from cinderblock.domain.sagas.retype import (
    ATTACHED,
    HAS_SNAPSHOTS,
    NEVER_MOVE,
    NEVER_REENCRYPT,
    NO_BACKEND,
    RetypeDecision,
    RetypeStep,
    decide_retype,
    encryption_changes,
    give_up_reencrypts,
    retype_to_run,
)
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_encryption import retype_key_id
from cinderblock.domain.volume_type import VolumeType
from tests.unit.domain.given import HOST, available, in_state

pytestmark = pytest.mark.unit

LUKS = {
    "provider": "luks",
    "cipher": "aes-xts-plain64",
    "key_size": 256,
    "control_location": "front-end",
}


@dataclass(frozen=True)
class P:
    location: str
    free_gb: int
    multiattach: bool = False


HERE = P(HOST, free_gb=5)  # node1@file-a#pool0
A1 = P("node1@file-a#pool1", free_gb=40)
B0 = P("node1@file-b#pool0", free_gb=90)
B1 = P("node1@file-b#pool1", free_gb=60)
POOLS = [HERE, A1, B0, B1]


def a_type(backend: str | None = None, *, encrypted: bool = False) -> VolumeType:
    specs: dict[str, Any] = {"volume_backend_name": backend} if backend else {}
    vtype = VolumeType.define(
        UUID(int=2), name="ssd", description=None, is_public=True, extra_specs=specs
    )
    if encrypted:
        vtype.create_encryption("enc-1", LUKS)
    return vtype


def retyping(
    policy: str = "on-demand", *, encrypted: bool = False, status: Status = Status.AVAILABLE
) -> tuple[Volume, int]:
    """A 10 GB volume on ``HOST`` (``status``) that asked for a retype to type 2."""
    volume = available()
    if encrypted:
        volume.set_encryption("key-1", dict(LUKS))
    in_state(volume, status)
    volume.request_retype(
        str(UUID(int=2)),
        "ssd",
        new_multiattach=False,
        migration_policy=policy,
        reservation_id="res-1",
    )
    return volume, volume.collect_events()[-1].originator_version


def test_the_volumes_pool_suits_the_new_type_in_place() -> None:
    volume, version = retyping()
    decision = decide_retype(volume, version, a_type("file-a"), POOLS)
    assert decision == RetypeDecision(RetypeStep.IN_PLACE)


def test_in_place_even_with_snapshots_and_whatever_the_policy() -> None:
    for policy in ("never", "on-demand"):
        volume, version = retyping(policy)
        volume.snapshot_ids.append("snap-1")
        assert decide_retype(volume, version, a_type(), POOLS).step is RetypeStep.IN_PLACE


def test_a_pool_that_does_not_suit_moves_to_the_freest_that_does() -> None:
    volume, version = retyping()
    decision = decide_retype(volume, version, a_type("file-b"), POOLS)
    assert decision == RetypeDecision(RetypeStep.MOVE, target=B0.location)


def test_a_move_needs_room_for_the_volume() -> None:
    volume, version = retyping()
    small = [HERE, P("node1@file-b#pool0", free_gb=9)]
    decision = decide_retype(volume, version, a_type("file-b"), small)
    assert decision == RetypeDecision(RetypeStep.REFUSE, reason=NO_BACKEND)


def test_the_volumes_pool_not_reported_means_a_move() -> None:
    volume, version = retyping()
    decision = decide_retype(volume, version, a_type(), [A1, B0])
    assert decision == RetypeDecision(RetypeStep.MOVE, target=B0.location)


def test_policy_never_refuses_a_move() -> None:
    volume, version = retyping("never")
    decision = decide_retype(volume, version, a_type("file-b"), POOLS)
    assert decision == RetypeDecision(RetypeStep.REFUSE, reason=NEVER_MOVE)


def test_a_move_is_refused_while_the_volume_has_snapshots() -> None:
    volume, version = retyping()
    volume.snapshot_ids.append("snap-1")
    decision = decide_retype(volume, version, a_type("file-b"), POOLS)
    assert decision == RetypeDecision(RetypeStep.REFUSE, reason=HAS_SNAPSHOTS)


def test_policy_never_with_snapshots_names_the_policy() -> None:
    volume, version = retyping("never")
    volume.snapshot_ids.append("snap-1")
    decision = decide_retype(volume, version, a_type("file-b"), POOLS)
    assert decision.reason == NEVER_MOVE


def test_into_an_encrypted_type_reencrypts_in_its_own_pool_when_it_suits() -> None:
    volume, version = retyping()
    decision = decide_retype(volume, version, a_type(encrypted=True), POOLS)
    assert decision == RetypeDecision(
        RetypeStep.REENCRYPT, target=HOST, key_id=retype_key_id(volume.vid, version)
    )


def test_reencrypt_elsewhere_when_its_pool_does_not_suit() -> None:
    volume, version = retyping()
    decision = decide_retype(volume, version, a_type("file-b", encrypted=True), POOLS)
    assert (decision.step, decision.target) == (RetypeStep.REENCRYPT, B0.location)


def test_out_of_encryption_reencrypts_without_a_new_key() -> None:
    volume, version = retyping(encrypted=True)
    decision = decide_retype(volume, version, a_type(), POOLS)
    assert decision == RetypeDecision(RetypeStep.REENCRYPT, target=HOST, key_id=None)


def test_the_same_encryption_is_no_reencrypt() -> None:
    volume, version = retyping(encrypted=True)
    new_type = a_type("file-a", encrypted=True)
    assert not encryption_changes(volume, new_type)
    assert decide_retype(volume, version, new_type, POOLS).step is RetypeStep.IN_PLACE


def test_a_reencrypt_with_policy_never_is_refused() -> None:
    volume, version = retyping("never")
    decision = decide_retype(volume, version, a_type(encrypted=True), POOLS)
    assert decision == RetypeDecision(RetypeStep.REFUSE, reason=NEVER_REENCRYPT)


def test_a_reencrypt_of_an_attached_volume_is_refused() -> None:
    volume, version = retyping(status=Status.IN_USE)
    decision = decide_retype(volume, version, a_type(encrypted=True), POOLS)
    assert decision == RetypeDecision(RetypeStep.REFUSE, reason=ATTACHED)


def test_a_reencrypt_is_refused_while_the_volume_has_snapshots() -> None:
    volume, version = retyping()
    volume.snapshot_ids.append("snap-1")
    decision = decide_retype(volume, version, a_type(encrypted=True), POOLS)
    assert decision.reason == HAS_SNAPSHOTS


def test_a_reencrypt_with_no_room_anywhere_is_refused() -> None:
    volume, version = retyping()
    decision = decide_retype(volume, version, a_type("file-z", encrypted=True), POOLS)
    assert decision == RetypeDecision(RetypeStep.REFUSE, reason=NO_BACKEND)


def test_a_type_gone_meanwhile_from_an_encrypted_volume_is_refused() -> None:
    volume, version = retyping(encrypted=True)
    decision = decide_retype(volume, version, None, POOLS)
    assert decision == RetypeDecision(RetypeStep.REFUSE, reason=NO_BACKEND)


def test_nothing_when_the_retype_is_not_pending_at_that_version() -> None:
    volume, version = retyping()
    assert decide_retype(volume, version + 1, a_type(), POOLS).step is RetypeStep.SKIP
    assert decide_retype(None, version, a_type(), POOLS).step is RetypeStep.SKIP
    volume.complete_retype(version, None)
    assert decide_retype(volume, version, a_type(), POOLS).step is RetypeStep.SKIP
    assert retype_to_run(volume, version) is None


def test_give_up_reencrypts_only_a_pending_change_of_encryption() -> None:
    volume, version = retyping()
    assert give_up_reencrypts(volume, version, a_type(encrypted=True))
    assert not give_up_reencrypts(volume, version, a_type())
    assert not give_up_reencrypts(volume, version + 1, a_type(encrypted=True))
    assert not give_up_reencrypts(None, version, a_type(encrypted=True))
