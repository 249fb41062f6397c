"""Volumes.create_volume, delete_volume, complete_delete and set_bootable on the in-memory
store: what each appends (one append per command, the quota with the volume), and what a
refusal leaves (nothing)."""

from __future__ import annotations

import uuid

import pytest

from cinderblock.domain.errors import InvalidVolumeError, QuotaExceededError, VolumeNotFoundError
from cinderblock.domain.status import Status
from cinderblock.store.eventstore import START
from cinderblock.store.volumes import DEFAULT_TYPE_NAME, Caller
from tests.helpers.commands import HOST, Service, volume_fields

# ---------------------------------------------------------------- create


async def test_create_appends_the_volume_and_its_quota_together(service: Service) -> None:
    vid = uuid.uuid4()
    at = await service.volumes.create_volume(
        service.caller, vid, meta={"request_id": "req-1"}, **volume_fields(2)
    )
    assert service.appended(at) == [
        "Volume.Created",
        "ProjectQuota.Created",
        "ProjectQuota.UsageAdjusted",
    ]
    volume = await service.volume(str(vid))
    assert (volume.status, volume.size_gb, volume.host) == (Status.CREATING, 2, None)
    assert (volume.project_id, volume.user_id) == (service.caller.project_id, "user-1")
    assert (volume.volume_type_name, volume.availability_zone) == (DEFAULT_TYPE_NAME, "nova")
    assert await service.usage("volumes", "gigabytes", f"volumes_{DEFAULT_TYPE_NAME}") == (1, 2, 1)
    assert all(r.meta == {"request_id": "req-1"} for r in service.store.log.rows)


async def test_the_create_saga_places_it_once(service: Service) -> None:
    vid = await service.created()
    assert await service.volumes.complete_create(vid, HOST, meta={})
    assert not await service.volumes.complete_create(vid, "elsewhere", meta={})  # redelivery
    volume = await service.volume(vid)
    assert (volume.status, volume.host) == (Status.AVAILABLE, HOST)
    assert service.events(vid) == ["Volume.Created", "Volume.CreateCompleted"]


async def test_a_create_over_the_volume_count_is_refused_and_appends_nothing(
    service: Service,
) -> None:
    for _ in range(3):
        await service.created()
    appends = service.appends
    with pytest.raises(QuotaExceededError) as refused:
        await service.created()
    assert "Maximum number of volumes allowed (3) exceeded" in str(refused.value)
    assert service.appends == appends
    assert await service.usage("volumes") == (3,)


async def test_a_create_over_the_gigabytes_is_refused_and_appends_nothing(
    service: Service,
) -> None:
    await service.created(size_gb=8)
    with pytest.raises(QuotaExceededError) as refused:
        await service.created(size_gb=3)
    assert "exceeds allowed gigabytes quota" in str(refused.value)
    assert service.appends == 1
    assert await service.usage("volumes", "gigabytes") == (1, 8)


async def test_projects_have_quotas_of_their_own(service: Service) -> None:
    for _ in range(3):
        await service.created()
    other = Service(service.store, service.volumes, Caller("user-2", uuid.uuid4().hex))
    await other.created()
    assert await other.usage("volumes") == (1,)
    assert await service.usage("volumes") == (3,)


# ---------------------------------------------------------------- delete


async def test_a_never_placed_volume_is_gone_at_once_with_its_quota(service: Service) -> None:
    vid = await service.created(size_gb=2)
    at = await service.volumes.delete_volume(service.caller, vid, meta={})
    assert service.appended(at) == [
        "Volume.DeleteRequested",
        "Volume.Deleted",
        "ProjectQuota.UsageAdjusted",
    ]
    assert (await service.volume(vid)).is_deleted
    assert await service.usage("volumes", "gigabytes") == (0, 0)
    with pytest.raises(VolumeNotFoundError):
        await service.volumes.get(service.caller, vid)


async def test_a_placed_volume_is_deleting_until_the_saga_removes_it(service: Service) -> None:
    vid = await service.available(size_gb=2)
    at = await service.volumes.delete_volume(service.caller, vid, meta={})
    assert service.appended(at) == ["Volume.DeleteRequested"]
    assert (await service.volume(vid)).status == Status.DELETING
    assert await service.usage("volumes", "gigabytes") == (1, 2)  # kept until it is gone
    assert await service.volumes.complete_delete(vid, meta={})
    assert await service.usage("volumes", "gigabytes") == (0, 0)
    appends = service.appends
    assert not await service.volumes.complete_delete(vid, meta={})  # redelivery
    assert service.appends == appends


async def test_a_volume_in_work_is_not_deleted(service: Service) -> None:
    vid = await service.available()
    await service.volumes.extend_volume(
        service.caller, vid, 2, in_use_allowed=False, reservation_id="r1", meta={}
    )
    appends = service.appends
    with pytest.raises(InvalidVolumeError):
        await service.volumes.delete_volume(service.caller, vid, meta={})
    assert service.appends == appends
    assert (await service.volume(vid)).status == Status.EXTENDING


async def test_another_projects_volume_is_not_found_unless_admin(service: Service) -> None:
    vid = await service.available()
    stranger = Caller("user-2", uuid.uuid4().hex)
    for volume_id in (vid, "not-a-uuid", str(uuid.uuid4())):
        with pytest.raises(VolumeNotFoundError):
            await service.volumes.delete_volume(stranger, volume_id, meta={})
    assert (await service.volume(vid)).status == Status.AVAILABLE
    admin = Caller("admin", uuid.uuid4().hex, is_admin=True)
    await service.volumes.delete_volume(admin, vid, meta={})
    assert (await service.volume(vid)).status == Status.DELETING


# ---------------------------------------------------------------- bootable


async def test_set_bootable_appends_one_event(service: Service) -> None:
    vid = await service.available()
    at = await service.volumes.set_bootable(service.caller, vid, True, meta={"action": "x"})
    assert service.appended(at) == ["Volume.BootableSet"]
    assert (await service.volume(vid)).bootable is True


async def test_an_authorization_refusal_appends_nothing(service: Service) -> None:
    vid = await service.available()
    appends = service.appends

    def refuse(_: object) -> None:
        raise PermissionError("policy")

    with pytest.raises(PermissionError):
        await service.volumes.set_bootable(service.caller, vid, True, meta={}, authorize=refuse)
    assert service.appends == appends


async def test_an_action_that_changes_nothing_appends_nothing(service: Service) -> None:
    vid = await service.available()
    at, result = await service.volumes.act(service.caller, vid, lambda v: v.size_gb, meta={})
    assert (at, result) == (START, 1)
