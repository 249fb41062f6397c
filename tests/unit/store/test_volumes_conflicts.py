"""Volumes retries a version conflict (another process wrote first) on fresh state, and
answers 409 only when conflicts outlast the deadline; concurrent commands of one project
keep the quota exact. On the in-memory store, where every handle is a process of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cinderblock.domain.errors import InvalidVolumeError, QuotaExceededError
from cinderblock.domain.quota import ProjectQuota, quota_id
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from cinderblock.store.eventstore import Position
from cinderblock.store.memory import MemoryEventStore
from cinderblock.store.volumes import ConflictError
from tests.helpers.commands import Service, service_on


class RacedStore(MemoryEventStore):
    """Before each of its next ``times`` saves, another process (a sibling handle on the
    same log) runs ``race`` first, so the save is made on a stale load."""

    def __init__(self) -> None:
        super().__init__()
        self.race: Callable[[MemoryEventStore], Awaitable[None]] | None = None
        self.times = 0
        self.raced = 0

    async def save(self, *aggregates: Any, meta: Any) -> Position:
        if self.race is not None and self.raced < self.times:
            self.raced += 1
            await self.race(self.sibling())
        return await super().save(*aggregates, meta=meta)


@pytest.fixture
def raced() -> Service:
    return service_on(RacedStore(), conflict_deadline=0.3)


def _race(
    service: Service, race: Callable[[MemoryEventStore], Awaitable[None]], times: int
) -> RacedStore:
    store = service.store
    assert isinstance(store, RacedStore)
    store.race, store.times, store.raced = race, times, 0
    return store


async def test_a_command_that_lost_a_race_is_retried_on_the_new_state(raced: Service) -> None:
    vid = await raced.available(1)
    other = await raced.available(1)

    async def another_extend(elsewhere: MemoryEventStore) -> None:
        """Another API process extends the other volume: the project's quota moves on."""
        volume = await elsewhere.load(uuid.UUID(other), Volume)
        quota = await elsewhere.load(quota_id(raced.caller.project_id), ProjectQuota)
        assert volume is not None
        assert quota is not None
        volume.request_extend(5, in_use_allowed=False, reservation_id="r-other")
        quota.reserve("r-other", {"gigabytes": 4}, {"gigabytes": 10}, size_gb=5)
        await elsewhere.save(volume, quota, meta={})

    store = _race(raced, another_extend, times=1)
    await raced.volumes.extend_volume(
        raced.caller, vid, 3, in_use_allowed=False, reservation_id="r-mine", meta={}
    )
    assert store.log.conflicts == 1
    quota = await raced.quota()
    assert set(quota.reservations) == {"r-other", "r-mine"}
    assert quota.usage("gigabytes") == 2 + 4 + 2
    assert (await raced.volume(vid)).status == Status.EXTENDING


async def test_the_retry_decides_again_and_may_refuse(raced: Service) -> None:
    """The other process used up the gigabytes: the retried extend is refused, and what
    it first tried to append never is."""
    vid = await raced.available(1)

    async def fill_the_quota(elsewhere: MemoryEventStore) -> None:
        quota = await elsewhere.load(quota_id(raced.caller.project_id), ProjectQuota)
        assert quota is not None
        quota.consume({"gigabytes": 8}, {"gigabytes": 10}, size_gb=8, reason="elsewhere")
        await elsewhere.save(quota, meta={})

    _race(raced, fill_the_quota, times=1)
    with pytest.raises(QuotaExceededError):
        await raced.volumes.extend_volume(
            raced.caller, vid, 3, in_use_allowed=False, reservation_id="r", meta={}
        )
    assert "Volume.ExtendRequested" not in raced.events(vid)
    assert (await raced.volume(vid)).status == Status.AVAILABLE


async def test_the_retry_sees_the_volume_as_it_is_now(raced: Service) -> None:
    vid = await raced.available(1)

    async def delete_it(elsewhere: MemoryEventStore) -> None:
        volume = await elsewhere.load(uuid.UUID(vid), Volume)
        assert volume is not None
        volume.request_delete()
        await elsewhere.save(volume, meta={})

    _race(raced, delete_it, times=1)
    with pytest.raises(InvalidVolumeError):
        await raced.volumes.extend_volume(
            raced.caller, vid, 2, in_use_allowed=False, reservation_id="r", meta={}
        )
    assert (await raced.volume(vid)).status == Status.DELETING


async def test_conflicts_that_outlast_the_deadline_are_a_409(raced: Service) -> None:
    vid = await raced.available(1)

    async def touch(elsewhere: MemoryEventStore) -> None:
        volume = await elsewhere.load(uuid.UUID(vid), Volume)
        assert volume is not None
        volume.set_bootable(not volume.bootable)
        await elsewhere.save(volume, meta={})

    store = _race(raced, touch, times=10_000)
    with pytest.raises(ConflictError):
        await raced.volumes.extend_volume(
            raced.caller, vid, 2, in_use_allowed=False, reservation_id="r", meta={}
        )
    assert store.log.conflicts >= 2
    assert "Volume.ExtendRequested" not in raced.events(vid)
    assert (await raced.quota()).reservations == {}


async def test_a_burst_of_creates_in_one_project_keeps_the_limit_exact() -> None:
    service = service_on(limits={"volumes": 4, "gigabytes": 100})
    results = await asyncio.gather(*(service.created() for _ in range(10)), return_exceptions=True)
    created = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, QuotaExceededError)]
    assert (len(created), len(refused)) == (4, 6), results
    assert service.store.log.conflicts > 0  # they raced, and the losers retried
    assert await service.usage("volumes", "gigabytes") == (4, 4)
    volumes = [await service.volume(v) for v in created]
    assert all(v.status == Status.CREATING for v in volumes)
