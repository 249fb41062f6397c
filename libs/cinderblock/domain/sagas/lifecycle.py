"""Create and delete sagas' decisions. Pure."""

from __future__ import annotations

from cinderblock.domain.status import Status
from cinderblock.domain.unmanage import UNMANAGING
from cinderblock.domain.volume import Volume


def needs_create(volume: Volume | None) -> bool:
    """On ``Created``: place and create the backing store while the volume is ``creating``.

    Compensation: any driver failure → ``fail_create`` (status ``error``; quota stays
    consumed until the volume is deleted, as in Cinder).
    """
    return volume is not None and volume.status == Status.CREATING and volume.host is None


def needs_delete(volume: Volume | None) -> bool:
    """On ``DeleteRequested``: remove the backing store while the volume is ``deleting``.

    Compensation: a driver failure → ``fail_delete`` (``error_deleting``, quota kept).
    """
    return volume is not None and volume.status == Status.DELETING and volume.host is not None


def needs_unmanage(volume: Volume | None) -> bool:
    """On ``UnmanageRequested``: tell the backend to forget the volume (data stays).

    Compensation: a driver failure → ``fail_unmanage`` (``error_unmanaging``, quota kept).
    """
    return volume is not None and volume.status in UNMANAGING and volume.host is not None


def abandoned_during_create(volume: Volume | None) -> bool:
    """After the backend made the volume's store and the completion was refused: the volume
    was deleted meanwhile (never placed, so gone at once). Compensation: the store just
    made is removed again."""
    return volume is not None and volume.is_deleted and volume.host is None


def image_write_to_undo(volume: Volume | None) -> bool:
    """Giving up the create of a volume from an image that never completed (the image
    stayed unreadable): its new file, in whichever pool it was made, is removed before the
    create fails."""
    return volume is not None and volume.from_image and volume.host is None
