"""ProjectQuota (spec §4): usage and reservations as events, limits passed in."""

from __future__ import annotations

from uuid import NAMESPACE_URL, uuid5

import pytest

from cinderblock.domain.errors import QuotaExceededError, VolumeError
from cinderblock.domain.quota import DEFAULT_LIMITS, ProjectQuota, quota_id, volume_deltas
from tests.unit.domain.given import PROJECT, new_quota, recorded, state

pytestmark = pytest.mark.unit

UNLIMITED: dict[str, int] = {}
ONE_VOLUME = volume_deltas(10, "lvm", count=1)


def limits(**values: int) -> dict[str, int]:
    return {"volumes": 10, "gigabytes": 1000, "per_volume_gigabytes": -1} | values


# -- helpers and defaults ---------------------------------------------------------------------


def test_quota_id_is_derived_from_the_project() -> None:
    assert quota_id(PROJECT) == uuid5(NAMESPACE_URL, "cinderblock:quota:project-a")
    assert quota_id(PROJECT) == quota_id(PROJECT)
    assert quota_id("project-b") != quota_id(PROJECT)


def test_default_limits_are_cinders() -> None:
    assert dict(DEFAULT_LIMITS) == {
        "volumes": 10,
        "gigabytes": 1000,
        "snapshots": 10,
        "backups": 10,
        "backup_gigabytes": 1000,
        "groups": 10,
        "per_volume_gigabytes": -1,
    }
    with pytest.raises(TypeError):
        DEFAULT_LIMITS["volumes"] = 1  # type: ignore[index]


def test_volume_deltas_count_a_volume_globally_and_per_type() -> None:
    assert volume_deltas(10, "lvm", count=1) == {
        "gigabytes": 10,
        "gigabytes_lvm": 10,
        "volumes": 1,
        "volumes_lvm": 1,
    }
    assert volume_deltas(10, "lvm", count=-1) == {
        "gigabytes": 10,
        "gigabytes_lvm": 10,
        "volumes": -1,
        "volumes_lvm": -1,
    }


def test_volume_deltas_of_a_resize_count_no_volumes() -> None:
    assert volume_deltas(5, "ssd", count=0) == {"gigabytes": 5, "gigabytes_ssd": 5}


def test_start_records_created_for_the_project() -> None:
    quota = ProjectQuota.start(PROJECT)

    events = quota.collect_events()
    assert recorded(events) == [(ProjectQuota.Created, {"project_id": PROJECT})]
    assert quota.id == quota_id(PROJECT)
    assert (quota.in_use, quota.reservations) == ({}, {})
    assert quota.usage("gigabytes") == 0
    assert quota.reserved("gigabytes") == 0


# -- consume / release_usage ------------------------------------------------------------------


def test_consume_records_the_usage() -> None:
    quota = new_quota()

    quota.consume(ONE_VOLUME, limits(), size_gb=10, reason="create v1")

    assert recorded(quota.collect_events()) == [
        (ProjectQuota.UsageAdjusted, {"deltas": ONE_VOLUME, "reason": "create v1"})
    ]
    assert quota.in_use == ONE_VOLUME
    assert quota.reservations == {}
    assert quota.usage("gigabytes") == 10
    assert quota.usage("volumes_lvm") == 1


def test_consumption_adds_up() -> None:
    quota = new_quota()

    quota.consume(volume_deltas(10, "lvm", count=1), limits(), size_gb=10, reason="v1")
    quota.consume(volume_deltas(5, "ssd", count=1), limits(), size_gb=5, reason="v2")

    assert quota.in_use == {
        "gigabytes": 15,
        "gigabytes_lvm": 10,
        "volumes": 2,
        "volumes_lvm": 1,
        "gigabytes_ssd": 5,
        "volumes_ssd": 1,
    }


def test_release_usage_records_negative_deltas() -> None:
    quota = new_quota()
    quota.consume(ONE_VOLUME, limits(), size_gb=10, reason="create v1")
    quota.collect_events()

    quota.release_usage(ONE_VOLUME, reason="delete v1")

    assert recorded(quota.collect_events()) == [
        (
            ProjectQuota.UsageAdjusted,
            {
                "deltas": {
                    "gigabytes": -10,
                    "gigabytes_lvm": -10,
                    "volumes": -1,
                    "volumes_lvm": -1,
                },
                "reason": "delete v1",
            },
        )
    ]
    assert quota.in_use == {"gigabytes": 0, "gigabytes_lvm": 0, "volumes": 0, "volumes_lvm": 0}


# -- reserve / commit / release ---------------------------------------------------------------


def test_reserve_holds_the_deltas_apart_from_usage() -> None:
    quota = new_quota()
    quota.consume(ONE_VOLUME, limits(), size_gb=10, reason="create v1")
    quota.collect_events()
    grow = volume_deltas(5, "lvm", count=0)

    quota.reserve("res-1", grow, limits(), size_gb=15)

    assert recorded(quota.collect_events()) == [
        (ProjectQuota.Reserved, {"reservation_id": "res-1", "deltas": grow})
    ]
    assert quota.reservations == {"res-1": grow}
    assert quota.in_use["gigabytes"] == 10
    assert quota.reserved("gigabytes") == 5
    assert quota.usage("gigabytes") == 15
    assert quota.reserved("volumes") == 0
    assert quota.usage("volumes") == 1


def test_reservations_add_up() -> None:
    quota = new_quota()

    quota.reserve("res-1", {"gigabytes": 5}, limits(), size_gb=15)
    quota.reserve("res-2", {"gigabytes": 7}, limits(), size_gb=17)

    assert quota.reserved("gigabytes") == 12
    assert quota.usage("gigabytes") == 12


def test_commit_makes_a_reservation_usage() -> None:
    quota = new_quota()
    quota.consume(ONE_VOLUME, limits(), size_gb=10, reason="create v1")
    quota.reserve("res-1", volume_deltas(5, "lvm", count=0), limits(), size_gb=15)
    quota.collect_events()

    assert quota.commit("res-1") is True

    assert recorded(quota.collect_events()) == [
        (ProjectQuota.ReservationCommitted, {"reservation_id": "res-1"})
    ]
    assert quota.reservations == {}
    assert quota.in_use == {"gigabytes": 15, "gigabytes_lvm": 15, "volumes": 1, "volumes_lvm": 1}
    assert quota.usage("gigabytes") == 15


def test_release_drops_a_reservation() -> None:
    quota = new_quota()
    quota.consume(ONE_VOLUME, limits(), size_gb=10, reason="create v1")
    quota.reserve("res-1", volume_deltas(5, "lvm", count=0), limits(), size_gb=15)
    quota.collect_events()

    assert quota.release("res-1") is True

    assert recorded(quota.collect_events()) == [
        (ProjectQuota.ReservationReleased, {"reservation_id": "res-1"})
    ]
    assert quota.reservations == {}
    assert quota.in_use == ONE_VOLUME
    assert quota.usage("gigabytes") == 10


def test_settling_one_reservation_leaves_the_others() -> None:
    quota = new_quota()
    quota.reserve("res-1", {"gigabytes": 5}, limits(), size_gb=15)
    quota.reserve("res-2", {"gigabytes": 7}, limits(), size_gb=17)

    quota.commit("res-1")

    assert quota.reservations == {"res-2": {"gigabytes": 7}}
    assert quota.in_use == {"gigabytes": 5}
    assert quota.usage("gigabytes") == 12


@pytest.mark.parametrize("settle", ["commit", "release"])
def test_settling_an_unknown_reservation_records_nothing(settle: str) -> None:
    quota = new_quota()
    quota.reserve("res-1", {"gigabytes": 5}, limits(), size_gb=15)
    quota.collect_events()
    before = state(quota)

    assert getattr(quota, settle)("res-unknown") is False

    assert quota.collect_events() == []
    assert state(quota) == before


@pytest.mark.parametrize("first", ["commit", "release"])
@pytest.mark.parametrize("second", ["commit", "release"])
def test_a_reservation_is_settled_once(first: str, second: str) -> None:
    quota = new_quota()
    quota.reserve("res-1", {"gigabytes": 5}, limits(), size_gb=15)
    assert getattr(quota, first)("res-1") is True
    quota.collect_events()
    before = state(quota)

    assert getattr(quota, second)("res-1") is False

    assert quota.collect_events() == []
    assert state(quota) == before


# -- limits -----------------------------------------------------------------------------------


def test_per_volume_gigabytes_limits_the_requested_size() -> None:
    quota = new_quota()

    with pytest.raises(QuotaExceededError) as raised:
        quota.consume(
            volume_deltas(11, "lvm", count=1),
            limits(per_volume_gigabytes=10),
            size_gb=11,
            reason="create",
        )

    error = raised.value
    assert error.exc_name == "VolumeSizeExceedsLimit"
    assert error.message == "Requested volume size 11G is larger than maximum allowed limit 10G."
    assert error.resource == "per_volume_gigabytes"
    assert error.code == "over_quota"
    assert isinstance(error, VolumeError)
    assert quota.collect_events() == []
    assert quota.in_use == {}


def test_per_volume_gigabytes_checks_the_new_size_not_the_delta() -> None:
    """An extend to 11 GB breaks a 10 GB per-volume limit though it adds only 1 GB."""
    quota = new_quota()

    with pytest.raises(QuotaExceededError, match=r"size 11G is larger than .* limit 10G"):
        quota.reserve("res-1", {"gigabytes": 1}, limits(per_volume_gigabytes=10), size_gb=11)

    assert quota.collect_events() == []
    assert quota.reservations == {}


def test_per_volume_gigabytes_allows_exactly_the_limit() -> None:
    quota = new_quota()

    quota.consume(
        volume_deltas(10, "lvm", count=1),
        limits(per_volume_gigabytes=10),
        size_gb=10,
        reason="create",
    )

    assert quota.usage("gigabytes") == 10


def test_per_volume_gigabytes_is_checked_first() -> None:
    quota = new_quota()

    with pytest.raises(QuotaExceededError) as raised:
        quota.consume(
            volume_deltas(50, "lvm", count=1),
            limits(per_volume_gigabytes=10, gigabytes=20, volumes=0),
            size_gb=50,
            reason="create",
        )

    assert raised.value.exc_name == "VolumeSizeExceedsLimit"


def test_gigabytes_limit_counts_usage() -> None:
    quota = new_quota()
    quota.consume(volume_deltas(900, "lvm", count=1), limits(), size_gb=900, reason="v1")
    quota.collect_events()
    before = state(quota)

    with pytest.raises(QuotaExceededError) as raised:
        quota.consume(volume_deltas(101, "lvm", count=1), limits(), size_gb=101, reason="v2")

    error = raised.value
    assert error.exc_name == "VolumeSizeExceedsAvailableQuota"
    assert error.message == (
        "Requested volume or snapshot exceeds allowed gigabytes quota. "
        "Requested 101G, quota is 1000G and 900G has been consumed."
    )
    assert error.resource == "gigabytes"
    assert quota.collect_events() == []
    assert state(quota) == before


def test_gigabytes_limit_allows_exactly_the_limit() -> None:
    quota = new_quota()
    quota.consume(volume_deltas(900, "lvm", count=1), limits(), size_gb=900, reason="v1")

    quota.consume(volume_deltas(100, "lvm", count=1), limits(), size_gb=100, reason="v2")

    assert quota.usage("gigabytes") == 1000


def test_reservations_count_toward_usage() -> None:
    quota = new_quota()
    quota.consume(volume_deltas(400, "lvm", count=1), limits(), size_gb=400, reason="v1")
    quota.reserve("res-1", {"gigabytes": 500}, limits(), size_gb=900)
    quota.collect_events()
    before = state(quota)

    with pytest.raises(QuotaExceededError) as raised:
        quota.reserve("res-2", {"gigabytes": 101}, limits(), size_gb=501)

    assert raised.value.message == (
        "Requested volume or snapshot exceeds allowed gigabytes quota. "
        "Requested 101G, quota is 1000G and 900G has been consumed."
    )
    assert quota.collect_events() == []
    assert state(quota) == before


def test_released_reservation_frees_its_quota() -> None:
    quota = new_quota()
    quota.reserve("res-1", {"gigabytes": 1000}, limits(), size_gb=1000)
    with pytest.raises(QuotaExceededError):
        quota.reserve("res-2", {"gigabytes": 1}, limits(), size_gb=1)

    quota.release("res-1")
    quota.reserve("res-2", {"gigabytes": 1}, limits(), size_gb=1)

    assert quota.usage("gigabytes") == 1


def test_per_type_gigabytes_limit_names_its_resource() -> None:
    quota = new_quota()
    quota.consume(volume_deltas(40, "lvm", count=1), limits(), size_gb=40, reason="v1")

    with pytest.raises(QuotaExceededError) as raised:
        quota.consume(
            volume_deltas(20, "lvm", count=1),
            limits(gigabytes_lvm=50),
            size_gb=20,
            reason="v2",
        )

    assert raised.value.exc_name == "VolumeSizeExceedsAvailableQuota"
    assert raised.value.resource == "gigabytes_lvm"
    assert raised.value.message == (
        "Requested volume or snapshot exceeds allowed gigabytes_lvm quota. "
        "Requested 20G, quota is 50G and 40G has been consumed."
    )


def test_volumes_limit_counts_volumes() -> None:
    quota = new_quota()
    for n in range(3):
        quota.consume(volume_deltas(1, "lvm", count=1), limits(volumes=3), size_gb=1, reason=f"{n}")
    quota.collect_events()
    before = state(quota)

    with pytest.raises(QuotaExceededError) as raised:
        quota.consume(volume_deltas(1, "lvm", count=1), limits(volumes=3), size_gb=1, reason="4")

    error = raised.value
    assert error.exc_name == "VolumeLimitExceeded"
    assert error.message == "Maximum number of volumes allowed (3) exceeded for quota 'volumes'."
    assert error.resource == "volumes"
    assert quota.collect_events() == []
    assert state(quota) == before


def test_per_type_volumes_limit_names_its_resource() -> None:
    quota = new_quota()

    with pytest.raises(QuotaExceededError) as raised:
        quota.consume(volume_deltas(1, "lvm", count=1), limits(volumes_lvm=0), size_gb=1, reason="")

    assert raised.value.exc_name == "VolumeLimitExceeded"
    assert raised.value.resource == "volumes_lvm"
    assert raised.value.message == (
        "Maximum number of volumes allowed (0) exceeded for quota 'volumes_lvm'."
    )


def test_gigabytes_are_checked_before_volume_counts() -> None:
    quota = new_quota()

    with pytest.raises(QuotaExceededError) as raised:
        quota.consume(
            volume_deltas(10, "lvm", count=1),
            limits(gigabytes=5, volumes=0),
            size_gb=10,
            reason="create",
        )

    assert raised.value.exc_name == "VolumeSizeExceedsAvailableQuota"
    assert raised.value.resource == "gigabytes"


def test_global_gigabytes_are_checked_before_per_type() -> None:
    quota = new_quota()

    with pytest.raises(QuotaExceededError) as raised:
        quota.consume(
            volume_deltas(10, "lvm", count=1),
            limits(gigabytes=5, gigabytes_lvm=5),
            size_gb=10,
            reason="create",
        )

    assert raised.value.resource == "gigabytes"


@pytest.mark.parametrize(
    ("resource", "deltas", "size_gb"),
    [
        ("gigabytes", {"gigabytes": 5000}, 1),
        ("volumes", {"volumes": 50}, 1),
        ("per_volume_gigabytes", {"gigabytes": 1}, 5000),
    ],
)
def test_minus_one_is_unlimited(resource: str, deltas: dict[str, int], size_gb: int) -> None:
    tight = {"gigabytes": 10, "volumes": 10, "per_volume_gigabytes": 10}
    quota = new_quota()
    with pytest.raises(QuotaExceededError) as raised:
        quota.consume(deltas, tight, size_gb=size_gb, reason="x")
    assert raised.value.resource == resource

    quota.consume(deltas, tight | {resource: -1}, size_gb=size_gb, reason="x")

    assert recorded(quota.collect_events()) == [
        (ProjectQuota.UsageAdjusted, {"deltas": deltas, "reason": "x"})
    ]


def test_an_absent_limit_is_unlimited() -> None:
    quota = new_quota()

    quota.consume(volume_deltas(10**6, "lvm", count=1), UNLIMITED, size_gb=10**6, reason="")
    quota.reserve("res-1", {"gigabytes": 10**6}, UNLIMITED, size_gb=2 * 10**6)

    assert quota.usage("gigabytes") == 2 * 10**6


def test_zero_limit_refuses_any_increase() -> None:
    quota = new_quota()

    with pytest.raises(QuotaExceededError, match="quota is 0G and 0G has been consumed"):
        quota.consume(volume_deltas(1, "lvm", count=1), limits(gigabytes=0), size_gb=1, reason="")


def test_decreases_pass_even_when_already_over_the_limit() -> None:
    quota = new_quota()
    quota.consume(volume_deltas(100, "lvm", count=1), UNLIMITED, size_gb=100, reason="v1")

    quota.consume(
        {"gigabytes": -10, "volumes": 0}, limits(gigabytes=50, volumes=0), size_gb=0, reason=""
    )

    assert quota.in_use["gigabytes"] == 90
