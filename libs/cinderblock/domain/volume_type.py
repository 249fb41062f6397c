"""Volume types: named bundles of extra specs that decide where a volume goes and what it
can do (multiattach, size limits, backend). A type's name is unique through a small claim
aggregate saved atomically with it."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from cinderblock.domain.errors import InvalidInputError, VolumeError
from cinderblock.domain.type_encryption import TypeEncryption

DEFAULT_TYPE_NAME = "__DEFAULT__"
DEFAULT_TYPE_ID = uuid5(UUID(int=0), "cinderblock:volume-type:__DEFAULT__")
MULTIATTACH_ON = "<is> True"


class VolumeTypeNotFoundError(VolumeError):
    """Raised when no live type has the given id or name (404)."""

    code = "type_not_found"


class VolumeTypeExistsError(VolumeError):
    """Raised when a type with the name already exists (409)."""

    code = "type_exists"


def name_claim_id(name: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"cinderblock:volume-type-name:{name}")


class TypeNameClaim(Aggregate):
    """Who holds a type name. Saved with the type, so two creates of one name conflict."""

    class Created(Aggregate.Created):
        name: str
        type_id: str

    class Claimed(Aggregate.Event):
        type_id: str

    class Released(Aggregate.Event):
        pass

    @event(Created)
    def __init__(self, name: str, type_id: str) -> None:
        self.name = name
        self.type_id: str | None = type_id

    @classmethod
    def start(cls, name: str, type_id: str) -> TypeNameClaim:
        return cls._create(cls.Created, id=name_claim_id(name), name=name, type_id=type_id)

    def claim(self, type_id: str) -> None:
        if self.type_id is not None and self.type_id != type_id:
            raise VolumeTypeExistsError(f"Volume Type {self.name} already exists.")
        if self.type_id is None:
            self._claimed(type_id=type_id)

    @event(Claimed)
    def _claimed(self, type_id: str) -> None:
        self.type_id = type_id

    def release(self) -> None:
        if self.type_id is not None:
            self._released()

    @event(Released)
    def _released(self) -> None:
        self.type_id = None


class VolumeType(TypeEncryption, Aggregate):
    class Created(Aggregate.Created):
        name: str
        description: str | None
        is_public: bool
        extra_specs: dict[str, Any]

    class Updated(Aggregate.Event):
        changes: dict[str, Any]

    class ExtraSpecsSet(Aggregate.Event):
        specs: dict[str, Any]

    class ExtraSpecUnset(Aggregate.Event):
        key: str

    class AccessAdded(Aggregate.Event):
        project_id: str

    class AccessRemoved(Aggregate.Event):
        project_id: str

    class Deleted(Aggregate.Event):
        pass

    @event(Created)
    def __init__(
        self, name: str, description: str | None, is_public: bool, extra_specs: dict[str, Any]
    ) -> None:
        self.name = name
        self.description = description
        self.is_public = is_public
        self.extra_specs = dict(extra_specs)
        self.projects: list[str] = []
        self.deleted = False

    @classmethod
    def define(cls, type_id: UUID, **fields: Any) -> VolumeType:
        _check_specs(fields.get("extra_specs") or {})
        return cls._create(cls.Created, id=type_id, **fields)

    @property
    def tid(self) -> str:
        return str(self.id)

    # ------------------------------------------------------------- what it means

    @property
    def multiattach(self) -> bool:
        return self.extra_specs.get("multiattach") == MULTIATTACH_ON

    @property
    def backend_name(self) -> str | None:
        value = self.extra_specs.get("volume_backend_name")
        return str(value) if value else None

    def check_size(self, size_gb: int) -> None:
        """``provisioning:min_vol_size`` / ``max_vol_size`` (400 when outside, with the texts
        of Cinder's ``provision_filter_on_size``: create, extend and retype)."""
        low = _int_spec(self.extra_specs, "provisioning:min_vol_size")
        high = _int_spec(self.extra_specs, "provisioning:max_vol_size")
        if low is not None and size_gb < low:
            raise InvalidInputError(
                f"Specified volume size of '{size_gb}' is less than the minimum required "
                f"size of '{low}' for volume type '{self.name}'."
            )
        if high is not None and size_gb > high:
            raise InvalidInputError(
                f"Specified volume size of '{size_gb}' is greater than the maximum allowable "
                f"size of '{high}' for volume type '{self.name}'."
            )

    def visible_to(self, project_id: str, is_admin: bool) -> bool:
        return is_admin or self.is_public or project_id in self.projects

    # ------------------------------------------------------------- changes

    def update(self, changes: dict[str, Any]) -> None:
        if changes:
            self._updated(changes=dict(changes))

    @event(Updated)
    def _updated(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            setattr(self, key, value)

    def set_extra_specs(self, specs: dict[str, Any]) -> None:
        _check_specs({**self.extra_specs, **specs})
        self._extra_specs_set(specs=dict(specs))

    @event(ExtraSpecsSet)
    def _extra_specs_set(self, specs: dict[str, Any]) -> None:
        self.extra_specs.update(specs)

    def unset_extra_spec(self, key: str) -> None:
        if key not in self.extra_specs:
            raise VolumeTypeNotFoundError(
                f"Volume Type {self.tid} has no extra specs with key {key}."
            )
        self._extra_spec_unset(key=key)

    @event(ExtraSpecUnset)
    def _extra_spec_unset(self, key: str) -> None:
        self.extra_specs.pop(key, None)

    def add_access(self, project_id: str) -> None:
        if self.is_public:
            raise InvalidInputError(
                "Invalid volume type: Type access modification is not "
                "applicable to public volume type."
            )
        if project_id in self.projects:
            raise VolumeTypeExistsError(
                f"Volume type access for {self.tid}/{project_id} already exists."
            )
        self._access_added(project_id=project_id)

    @event(AccessAdded)
    def _access_added(self, project_id: str) -> None:
        self.projects.append(project_id)

    def remove_access(self, project_id: str) -> None:
        if project_id not in self.projects:
            raise VolumeTypeNotFoundError(
                f"Volume type access not found for {self.tid}/{project_id} combination."
            )
        self._access_removed(project_id=project_id)

    @event(AccessRemoved)
    def _access_removed(self, project_id: str) -> None:
        self.projects.remove(project_id)

    def delete(self) -> None:
        if self.id == DEFAULT_TYPE_ID:
            raise InvalidInputError(
                "Invalid volume type: the default volume type cannot be deleted."
            )
        self._deleted()

    @event(Deleted)
    def _deleted(self) -> None:
        self.deleted = True


def _int_spec(specs: dict[str, Any], key: str) -> int | None:
    value = specs.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _check_specs(specs: dict[str, Any]) -> None:
    if specs.get("multiattach") == MULTIATTACH_ON and specs.get("cacheable") == MULTIATTACH_ON:
        raise InvalidInputError("multiattach and cacheable cannot both be enabled.")
