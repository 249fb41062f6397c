"""Pool placement, the scheduler's rule written once: a pool suits a volume when it belongs
to the type's ``volume_backend_name`` (any pool when the type sets none) and can
multiattach if the volume does; among the suitable pools that hold the volume's size, the
one with the most free space wins (the first of equals, in the backend's order). Pure: the
create, retype and re-encrypting retype sagas pass the pools the driver reports."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Protocol

from cinderblock.domain.volume_type import VolumeType


class Pool(Protocol):
    """What placement reads of a pool (the driver's ``PoolStats``)."""

    @property
    def location(self) -> str: ...  # host@backend#pool

    @property
    def free_gb(self) -> int: ...

    @property
    def multiattach(self) -> bool: ...


def backend_of(location: str) -> str:
    """``host@backend#pool`` → ``host@backend``."""
    return location.partition("#")[0]


def suits(pool: Pool, volume_type: VolumeType | None, multiattach: bool) -> bool:
    """Whether ``pool`` may hold a volume of ``volume_type`` (None: no type found, any
    backend) that is ``multiattach`` or not."""
    backend = volume_type.backend_name if volume_type is not None else None
    backend_ok = backend is None or backend_of(pool.location).partition("@")[2] == backend
    return backend_ok and (pool.multiattach or not multiattach)


def suitable(
    pools: Iterable[Pool], volume_type: VolumeType | None, multiattach: bool
) -> list[Pool]:
    """The pools that suit, in the backend's order."""
    return [pool for pool in pools if suits(pool, volume_type, multiattach)]


def choose_pool(
    pools: Sequence[Pool],
    volume_type: VolumeType | None,
    size: int,
    multiattach: bool,
    exclude: Collection[str] = (),
    *,
    keep: Iterable[str] = (),
) -> str | None:
    """The location to put ``size`` GiB in, or None when no pool suits and fits.

    Args:
        exclude: locations never chosen (a retype's move away from the volume's pool).
        keep: locations the volume's data already sits in (its pool for a retype, a file
            an earlier delivery of the create made): the first that suits is chosen
            whatever its free space, so the data does not move or get a second copy.
    """
    for location in keep:
        here = next((pool for pool in pools if pool.location == location), None)
        if here is not None and suits(here, volume_type, multiattach):
            return here.location
    fits = [
        pool
        for pool in suitable(pools, volume_type, multiattach)
        if pool.location not in exclude and pool.free_gb >= size
    ]
    return max(fits, key=lambda pool: pool.free_gb).location if fits else None
