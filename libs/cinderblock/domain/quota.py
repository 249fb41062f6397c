"""Per-project quota usage as an aggregate: reservations and usage are events too.

Limits are not stored here yet: they come from configuration (Cinder's ``quota_*``
options) and are passed to each check. -1 means unlimited.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from cinderblock.domain.errors import InvalidInputError, QuotaExceededError

DEFAULT_LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "volumes": 10,
        "gigabytes": 1000,
        "snapshots": 10,
        "backups": 10,
        "backup_gigabytes": 1000,
        "groups": 10,
        "per_volume_gigabytes": -1,
    }
)


def quota_id(project_id: str) -> UUID:
    """The quota aggregate's id, derived from the project id."""
    return uuid5(NAMESPACE_URL, f"cinderblock:quota:{project_id}")


def volume_deltas(size_gb: int, type_name: str, *, count: int) -> dict[str, int]:
    """Usage deltas of ``count`` volumes (±1 or 0) of ``size_gb`` each of one type."""
    deltas = {"gigabytes": size_gb, f"gigabytes_{type_name}": size_gb}
    if count:
        deltas |= {"volumes": count, f"volumes_{type_name}": count}
    return deltas


def snapshot_deltas(size_gb: int, type_name: str, *, count: int) -> dict[str, int]:
    """Usage deltas of ``count`` (±1) snapshots of ``size_gb`` each of one type."""
    return {
        "snapshots": count,
        f"snapshots_{type_name}": count,
        "gigabytes": size_gb * count,
        f"gigabytes_{type_name}": size_gb * count,
    }


def type_move(size_gb: int, old_type: str, new_type: str) -> dict[str, int]:
    """A volume of ``size_gb`` changing type: its per-type usage moves from ``old_type`` to
    ``new_type`` (the global keys do not change)."""
    deltas = {f"volumes_{new_type}": 1, f"gigabytes_{new_type}": size_gb}
    deltas[f"volumes_{old_type}"] = -1
    deltas[f"gigabytes_{old_type}"] = -size_gb
    return deltas


class ProjectQuota(Aggregate):
    """Quota usage of one project: committed ``in_use`` plus outstanding reservations."""

    class Created(Aggregate.Created):
        project_id: str

    class UsageAdjusted(Aggregate.Event):
        deltas: dict[str, int]
        reason: str

    class Reserved(Aggregate.Event):
        reservation_id: str
        deltas: dict[str, int]

    class ReservationCommitted(Aggregate.Event):
        reservation_id: str

    class ReservationReleased(Aggregate.Event):
        reservation_id: str

    class LimitsSet(Aggregate.Event):
        limits: dict[str, int]

    class LimitsCleared(Aggregate.Event):
        pass

    @event(Created)
    def __init__(self, project_id: str) -> None:
        self.project_id = project_id
        self.in_use: dict[str, int] = {}
        self.reservations: dict[str, dict[str, int]] = {}
        self.limits: dict[str, int] = {}  # this project's own limits over the defaults

    @classmethod
    def start(cls, project_id: str) -> ProjectQuota:
        return cls._create(cls.Created, id=quota_id(project_id), project_id=project_id)

    def reserved(self, resource: str) -> int:
        return sum(r.get(resource, 0) for r in self.reservations.values())

    def usage(self, resource: str) -> int:
        return self.in_use.get(resource, 0) + self.reserved(resource)

    # ---------------------------------------------------------------- rules

    def check(self, deltas: Mapping[str, int], limits: Mapping[str, int], size_gb: int) -> None:
        """Raise QuotaExceededError when adding ``deltas`` breaks a limit (Cinder's order:
        per-volume size first, then gigabytes, then volume counts)."""
        limits = {**limits, **getattr(self, "limits", {})}
        per_volume = limits.get("per_volume_gigabytes", -1)
        if per_volume >= 0 and size_gb > per_volume:
            raise QuotaExceededError(
                "VolumeSizeExceedsLimit",
                f"Requested volume size {size_gb}G is larger than maximum allowed limit "
                f"{per_volume}G.",
                "per_volume_gigabytes",
            )
        for resource in sorted(deltas, key=lambda r: (not r.startswith("gigabytes"), r)):
            delta = deltas[resource]
            limit = limits.get(resource, -1)
            if delta <= 0 or limit < 0 or self.usage(resource) + delta <= limit:
                continue
            if resource.startswith("gigabytes"):
                raise QuotaExceededError(
                    "VolumeSizeExceedsAvailableQuota",
                    f"Requested volume or snapshot exceeds allowed {resource} quota. "
                    f"Requested {delta}G, quota is {limit}G and {self.usage(resource)}G "
                    "has been consumed.",
                    resource,
                )
            if resource.startswith("snapshots"):
                raise QuotaExceededError(
                    "SnapshotLimitExceeded",
                    f"Maximum number of snapshots allowed ({limit}) exceeded",
                    resource,
                )
            raise QuotaExceededError(
                "VolumeLimitExceeded",
                f"Maximum number of volumes allowed ({limit}) exceeded for quota '{resource}'.",
                resource,
            )

    def consume(
        self, deltas: Mapping[str, int], limits: Mapping[str, int], *, size_gb: int, reason: str
    ) -> None:
        """Check and commit at once (volume create: Cinder commits during the request)."""
        self.check(deltas, limits, size_gb)
        self._usage_adjusted(deltas=dict(deltas), reason=reason)

    def release_usage(self, deltas: Mapping[str, int], *, reason: str) -> None:
        """Give usage back (volume deleted). Never checked against limits."""
        self._usage_adjusted(deltas={k: -v for k, v in deltas.items()}, reason=reason)

    @event(UsageAdjusted)
    def _usage_adjusted(self, deltas: dict[str, int], reason: str) -> None:
        for resource, delta in deltas.items():
            self.in_use[resource] = self.in_use.get(resource, 0) + delta

    def reserve(
        self,
        reservation_id: str,
        deltas: Mapping[str, int],
        limits: Mapping[str, int],
        *,
        size_gb: int,
    ) -> None:
        """Check and hold ``deltas`` until the reservation is committed or released."""
        self.check(deltas, limits, size_gb)
        self._reserved(reservation_id=reservation_id, deltas=dict(deltas))

    @event(Reserved)
    def _reserved(self, reservation_id: str, deltas: dict[str, int]) -> None:
        self.reservations[reservation_id] = dict(deltas)

    def commit(self, reservation_id: str) -> bool:
        """Make a reservation usage. False (nothing recorded) if it is not outstanding."""
        if reservation_id not in self.reservations:
            return False
        self._committed(reservation_id=reservation_id)
        return True

    @event(ReservationCommitted)
    def _committed(self, reservation_id: str) -> None:
        for resource, delta in self.reservations.pop(reservation_id).items():
            self.in_use[resource] = self.in_use.get(resource, 0) + delta

    def release(self, reservation_id: str) -> bool:
        """Drop a reservation (compensation). False if it is not outstanding."""
        if reservation_id not in self.reservations:
            return False
        self._released(reservation_id=reservation_id)
        return True

    @event(ReservationReleased)
    def _released(self, reservation_id: str) -> None:
        self.reservations.pop(reservation_id, None)

    # ---------------------------------------------------------------- limits

    def set_limits(self, limits: Mapping[str, int], known: frozenset[str]) -> None:
        """PUT /os-quota-sets/{project}: unknown keys, and limits below what is used and
        reserved (except -1 and per_volume_gigabytes), are refused."""
        unknown = sorted(set(limits) - known)
        if unknown:
            raise InvalidInputError(f"Bad key(s) in quota set: {', '.join(unknown)}")
        for resource, limit in limits.items():
            if limit < -1:
                raise InvalidInputError(
                    f"Quota limit {limit} for {resource} must be -1 or greater."
                )
            used = self.usage(resource)
            if limit != -1 and resource != "per_volume_gigabytes" and limit < used:
                raise InvalidInputError(
                    f"Quota limit {limit} for {resource} must be greater than or equal to "
                    f"already used and reserved {used}."
                )
        if limits:
            self._limits_set(limits=dict(limits))

    @event(LimitsSet)
    def _limits_set(self, limits: dict[str, int]) -> None:
        self.limits = {**getattr(self, "limits", {}), **limits}

    def clear_limits(self) -> None:
        if getattr(self, "limits", {}):
            self._limits_cleared()

    @event(LimitsCleared)
    def _limits_cleared(self) -> None:
        self.limits = {}
