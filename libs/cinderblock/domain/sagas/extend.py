"""What the extend saga does next, decided from the volume's state. Pure; the runner in
the sagas service does the I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cinderblock.domain.pending import Kind
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume


class ExtendStep(Enum):
    GROW = "grow"  # ask the backend to grow the volume, then complete the extend
    NO_BACKEND = "no backend"  # never placed: fail it back (Cinder's NoValidBackend)
    SKIP = "skip"  # already completed or compensated: nothing to do (redelivery)


# Cinder's scheduler answer for a volume it finds no backend for (NoValidBackend).
NO_VALID_BACKEND = "No valid backend was found. The volume is on no backend."


@dataclass(frozen=True)
class ExtendDecision:
    step: ExtendStep
    new_size_gb: int = 0
    location: str = ""


def decide_extend(volume: Volume | None, request_version: int) -> ExtendDecision:
    """On ``ExtendRequested`` at ``request_version``.

    Compensation: a CapacityError from the backend, or a volume on no backend at all (its
    create failed, then an admin reset it to available) → ``fail_extend(restore=True)``
    (previous status, reservation released, as Cinder's scheduler does on NoValidBackend);
    any other backend failure → ``error_extending``.
    """
    if volume is None or volume.status != Status.EXTENDING:
        return ExtendDecision(ExtendStep.SKIP)
    pending = volume.pending_at(Kind.EXTEND, request_version)
    if pending is None:
        return ExtendDecision(ExtendStep.SKIP)
    if volume.host is None:
        return ExtendDecision(ExtendStep.NO_BACKEND, pending.payload.new_size_gb)
    return ExtendDecision(ExtendStep.GROW, pending.payload.new_size_gb, volume.host)
