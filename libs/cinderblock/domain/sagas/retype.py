"""What the retype saga does with a pending retype, decided from the volume, the new type
and the pools. Pure; the runner in the sagas service loads, calls the driver and records.

Cinder's rules: in place when the volume's pool suits the new type; otherwise a move
(migration policy ``on-demand``) to the freest pool that suits, or a refusal (``never``).
A change of encryption is never in place: the data is copied behind the new type's
encryption header (``on-demand``, the volume detached), into its own pool when that suits
the new type, else into the freest that does. A retype that must move data is refused
while the volume has snapshots (they live beside it and would be left behind).

Compensation: a refusal or a driver failure → ``RetypeFailed`` (type, status and
multiattach as before, the quota reservation released); a failed copy into a new
encryption also records ``ReencryptFailed`` (migration_status ``error``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from cinderblock.domain.pending import Kind, PendingOperation, RetypePayload
from cinderblock.domain.placement import Pool, choose_pool, suits
from cinderblock.domain.status import Status
from cinderblock.domain.type_encryption import same_encryption
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_encryption import retype_key_id
from cinderblock.domain.volume_type import VolumeType

ON_DEMAND = "on-demand"

HAS_SNAPSHOTS = "the volume has snapshots and would have to move"
NEVER_MOVE = "the volume's backend does not suit the new type and the migration policy is 'never'"
NO_BACKEND = "No valid backend was found."
NEVER_REENCRYPT = (
    "the new type's encryption differs from the volume's, so the data must be copied into a "
    "new encrypted volume, and the migration policy is 'never'"
)
ATTACHED = (
    "the new type's encryption differs from the volume's, so the data must be copied into a "
    "new encrypted volume, which needs the volume detached (no Nova swaps it in here)"
)


class RetypeStep(Enum):
    SKIP = "skip"  # not pending at this version: settled already (redelivery)
    IN_PLACE = "in place"  # Retyped, the data stays where it is
    MOVE = "move"  # driver.migrate_volume to ``target``, then Retyped with the new host
    REENCRYPT = "reencrypt"  # driver.reencrypt_volume into ``target``, then Retyped
    REFUSE = "refuse"  # RetypeFailed with ``reason``


@dataclass(frozen=True)
class RetypeDecision:
    step: RetypeStep
    target: str | None = None
    reason: str | None = None
    key_id: str | None = None  # the new key of a copy into an encrypted type


def retype_to_run(
    volume: Volume | None, request_version: int
) -> PendingOperation[RetypePayload] | None:
    """The retype requested at ``request_version`` while it is pending."""
    if volume is None:
        return None
    return volume.pending_at(Kind.RETYPE, request_version)


def encryption_changes(volume: Volume, new_type: VolumeType | None) -> bool:
    """Whether a retype to ``new_type`` changes the volume's encryption."""
    theirs = new_type.encryption if new_type is not None else None
    return not same_encryption(volume.encryption, theirs)


def _refuse(reason: str) -> RetypeDecision:
    return RetypeDecision(RetypeStep.REFUSE, reason=reason)


def decide_retype(
    volume: Volume | None,
    request_version: int,
    new_type: VolumeType | None,
    pools: Sequence[Pool],
) -> RetypeDecision:
    """On ``RetypeRequested`` at ``request_version``: in place, move, re-encrypt or refuse.
    ``new_type`` is the type the retype asks for (None: it is gone)."""
    pending = retype_to_run(volume, request_version)
    if volume is None or pending is None:
        return RetypeDecision(RetypeStep.SKIP)
    on_demand = pending.payload.migration_policy == ON_DEMAND
    here = volume.host or ""
    here_suits = any(
        pool.location == here and suits(pool, new_type, volume.multiattach) for pool in pools
    )
    reencrypt = encryption_changes(volume, new_type)
    if (reencrypt or not here_suits) and volume.snapshot_ids and on_demand:
        return _refuse(HAS_SNAPSHOTS)
    size, multiattach = volume.size_gb, volume.multiattach
    if reencrypt:
        if not on_demand:
            return _refuse(NEVER_REENCRYPT)
        if volume.previous_status == Status.IN_USE:  # an attached guest keeps the old image
            return _refuse(ATTACHED)
        target = choose_pool(pools, new_type, size, multiattach, {here}, keep=[here])
        if target is None or volume.host is None or new_type is None:
            return _refuse(NO_BACKEND)
        key_id = retype_key_id(volume.vid, request_version) if new_type.encryption else None
        return RetypeDecision(RetypeStep.REENCRYPT, target=target, key_id=key_id)
    if here_suits:
        return RetypeDecision(RetypeStep.IN_PLACE)
    if not on_demand:
        return _refuse(NEVER_MOVE)
    target = choose_pool(pools, new_type, size, multiattach, {here})
    if target is None or volume.host is None:
        return _refuse(NO_BACKEND)
    return RetypeDecision(RetypeStep.MOVE, target=target)


def give_up_reencrypts(
    volume: Volume | None, request_version: int, new_type: VolumeType | None
) -> bool:
    """After repeated failures: whether the pending retype was a copy into a new
    encryption (its compensation puts the volume's own image back first)."""
    if volume is None or retype_to_run(volume, request_version) is None:
        return False
    return encryption_changes(volume, new_type)
