"""Volumes.extend_volume and retype_volume on the in-memory store, with the saga's
completion and compensation: the quota is reserved with the request and committed or
released with the outcome, each in the same append as the volume's event; an outcome
recorded twice (a redelivery) appends nothing."""

from __future__ import annotations

import pytest

from cinderblock.domain.errors import InvalidInputError, InvalidVolumeError, QuotaExceededError
from cinderblock.domain.status import Status
from cinderblock.domain.volume_type import VolumeType
from cinderblock.store.volumes import DEFAULT_TYPE_NAME
from tests.helpers.commands import Service


def _allow(_: object) -> None:
    return None


async def _extending(service: Service, size_gb: int = 1, to: int = 3) -> tuple[str, int]:
    vid = await service.available(size_gb)
    at = await service.volumes.extend_volume(
        service.caller, vid, to, in_use_allowed=False, reservation_id="r-ext", meta={}
    )
    assert service.appended(at) == ["Volume.ExtendRequested", "ProjectQuota.Reserved"]
    return vid, (await service.volume(vid)).version


# ---------------------------------------------------------------- extend


async def test_an_extend_reserves_its_gigabytes(service: Service) -> None:
    vid, _ = await _extending(service, 1, 3)
    volume = await service.volume(vid)
    assert (volume.status, volume.size_gb) == (Status.EXTENDING, 1)
    quota = await service.quota()
    assert (quota.in_use["gigabytes"], quota.reserved("gigabytes")) == (1, 2)


async def test_a_completed_extend_commits_the_reservation_once(service: Service) -> None:
    vid, request = await _extending(service, 1, 3)
    assert await service.volumes.complete_extend(vid, request, meta={})
    volume = await service.volume(vid)
    assert (volume.status, volume.size_gb) == (Status.AVAILABLE, 3)
    quota = await service.quota()
    assert (quota.in_use["gigabytes"], quota.reserved("gigabytes")) == (3, 0)
    appends = service.appends
    assert not await service.volumes.complete_extend(vid, request, meta={})
    assert not await service.volumes.fail_extend(vid, request, "late", restore=True, meta={})
    assert service.appends == appends


async def test_a_failed_extend_releases_the_reservation(service: Service) -> None:
    vid, request = await _extending(service, 1, 3)
    assert await service.volumes.fail_extend(vid, request, "backend full", restore=False, meta={})
    volume = await service.volume(vid)
    assert (volume.status, volume.size_gb) == (Status.ERROR_EXTENDING, 1)
    assert await service.usage("gigabytes") == (1,)


async def test_an_outcome_for_another_request_is_ignored(service: Service) -> None:
    vid, request = await _extending(service)
    appends = service.appends
    assert not await service.volumes.complete_extend(vid, request + 7, meta={})
    assert service.appends == appends
    assert (await service.volume(vid)).status == Status.EXTENDING


async def test_an_extend_over_the_gigabytes_is_refused_and_appends_nothing(
    service: Service,
) -> None:
    vid = await service.available(4)
    appends = service.appends
    with pytest.raises(QuotaExceededError) as refused:
        await service.volumes.extend_volume(
            service.caller, vid, 11, in_use_allowed=False, reservation_id="r", meta={}
        )
    assert "Requested 7G, quota is 10G and 4G has been consumed." in str(refused.value)
    assert service.appends == appends
    assert (await service.volume(vid)).status == Status.AVAILABLE


async def test_an_extend_that_does_not_grow_is_refused(service: Service) -> None:
    vid = await service.available(2)
    appends = service.appends
    with pytest.raises(InvalidInputError):
        await service.volumes.extend_volume(
            service.caller, vid, 2, in_use_allowed=False, reservation_id="r", meta={}
        )
    assert service.appends == appends


# ---------------------------------------------------------------- retype


async def _gold(service: Service, **extra_specs: str) -> VolumeType:
    _, type_id = await service.volumes.create_type(
        name="gold", description=None, is_public=True, extra_specs=extra_specs, meta={}
    )
    vtype = await service.volumes.find_type("gold")
    assert vtype.tid == type_id
    return vtype


async def _retyping(service: Service, size_gb: int = 2) -> tuple[str, int]:
    gold = await _gold(service)
    vid = await service.available(size_gb)
    at = await service.volumes.retype_volume(
        service.caller,
        vid,
        gold,
        migration_policy="never",
        reservation_id="r-retype",
        meta={},
        authorize=_allow,
    )
    assert service.appended(at) == ["Volume.RetypeRequested", "ProjectQuota.Reserved"]
    return vid, (await service.volume(vid)).version


async def test_a_retype_reserves_the_new_types_usage(service: Service) -> None:
    vid, _ = await _retyping(service, 2)
    assert (await service.volume(vid)).status == Status.RETYPING
    quota = await service.quota()
    assert (quota.reserved("volumes_gold"), quota.reserved("gigabytes_gold")) == (1, 2)
    assert quota.reserved("volumes") == 0  # the global count does not move


async def test_a_completed_retype_moves_the_usage_once(service: Service) -> None:
    vid, request = await _retyping(service, 2)
    assert await service.volumes.settle_retype(vid, request, new_host=None, failure=None, meta={})
    volume = await service.volume(vid)
    assert (volume.status, volume.volume_type_name) == (Status.AVAILABLE, "gold")
    quota = await service.quota()
    assert quota.in_use["volumes_gold"] == 1
    assert quota.in_use[f"volumes_{DEFAULT_TYPE_NAME}"] == 0
    assert quota.reserved("volumes_gold") == 0
    appends = service.appends
    assert not await service.volumes.settle_retype(
        vid, request, new_host=None, failure=None, meta={}
    )
    assert service.appends == appends


async def test_a_failed_retype_releases_the_reservation(service: Service) -> None:
    vid, request = await _retyping(service, 2)
    assert await service.volumes.settle_retype(
        vid, request, new_host=None, failure="no valid backend", meta={}
    )
    volume = await service.volume(vid)
    assert (volume.status, volume.volume_type_name) == (Status.AVAILABLE, DEFAULT_TYPE_NAME)
    assert await service.usage("volumes_gold", f"volumes_{DEFAULT_TYPE_NAME}") == (0, 1)


async def test_a_retype_to_its_own_type_or_outside_the_types_sizes_is_refused(
    service: Service,
) -> None:
    await service.volumes.ensure_default_type()  # as the API does when it starts
    small = await _gold(service, **{"provisioning:max_vol_size": "1"})
    vid = await service.available(2)
    appends = service.appends
    with pytest.raises(InvalidInputError):
        await service.volumes.retype_volume(
            service.caller,
            vid,
            small,
            migration_policy="never",
            reservation_id="r",
            meta={},
            authorize=_allow,
        )
    default = await service.volumes.find_type(DEFAULT_TYPE_NAME)
    with pytest.raises(InvalidVolumeError):
        await service.volumes.retype_volume(
            service.caller,
            vid,
            default,
            migration_policy="never",
            reservation_id="r",
            meta={},
            authorize=_allow,
        )
    assert service.appends == appends
