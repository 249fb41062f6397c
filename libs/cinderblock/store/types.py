"""Volume-type verbs of the command service, and resolving a type by id or name from the
event store (the name claim gives the id)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from uuid import UUID, uuid4

from cinderblock.domain.volume_type import (
    DEFAULT_TYPE_ID,
    DEFAULT_TYPE_NAME,
    TypeNameClaim,
    VolumeType,
    VolumeTypeNotFoundError,
    name_claim_id,
)
from cinderblock.store.eventstore import ConcurrencyConflictError, Position
from cinderblock.store.plumbing import CommandPlumbing

T = TypeVar("T")


def _as_uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


class TypeCommands(CommandPlumbing):
    """Mixed into Volumes (uses its ``store`` and ``_retrying``)."""

    async def ensure_default_type(self) -> Position | None:
        """``__DEFAULT__`` always exists: created by an event the first time any API starts.
        Returns where it was written, if this call wrote it."""
        if await self.store.load(DEFAULT_TYPE_ID, VolumeType) is not None:
            return None
        vtype = VolumeType.define(
            DEFAULT_TYPE_ID,
            name=DEFAULT_TYPE_NAME,
            description="Default Volume Type",
            is_public=True,
            extra_specs={},
        )
        claim = TypeNameClaim.start(DEFAULT_TYPE_NAME, str(DEFAULT_TYPE_ID))
        with contextlib.suppress(ConcurrencyConflictError):  # another process made it first
            return await self.store.save(vtype, claim, meta={"actor": "bootstrap"})
        return None

    async def find_type(
        self, ref: str, *, project_id: str | None = None, is_admin: bool = True
    ) -> VolumeType:
        """A live type by id (when ``ref`` looks like one), then by name; 404 otherwise."""
        vtype: VolumeType | None = None
        tid = _as_uuid(ref)
        if tid is not None:
            vtype = await self.store.load(tid, VolumeType)
        if vtype is None or vtype.deleted:
            claim = await self.store.load(name_claim_id(ref), TypeNameClaim)
            vtype = None
            if claim is not None and claim.type_id is not None:
                vtype = await self.store.load(UUID(claim.type_id), VolumeType)
        hidden = (
            vtype is not None
            and project_id is not None
            and not vtype.visible_to(project_id, is_admin)
        )
        if vtype is None or vtype.deleted or hidden:
            message = (
                f"Volume type {ref} could not be found."
                if tid is not None
                else f"Volume type with name {ref} could not be found."
            )
            raise VolumeTypeNotFoundError(message)
        return vtype

    async def create_type(
        self,
        *,
        name: str,
        description: str | None,
        is_public: bool,
        extra_specs: Mapping[str, Any],
        meta: Mapping[str, Any],
    ) -> tuple[Position, str]:
        async def attempt() -> tuple[Position, str]:
            type_id = uuid4()
            vtype = VolumeType.define(
                type_id,
                name=name,
                description=description,
                is_public=is_public,
                extra_specs=dict(extra_specs),
            )
            claim = await self.store.load(name_claim_id(name), TypeNameClaim)
            if claim is None:
                claim = TypeNameClaim.start(name, str(type_id))
            else:
                claim.claim(str(type_id))
            return await self.store.save(vtype, claim, meta=meta), str(type_id)

        created: tuple[Position, str] = await self._retrying("create type", attempt)
        return created

    async def change_type(
        self, type_id: str, change: Callable[[VolumeType], T], *, meta: Mapping[str, Any]
    ) -> tuple[Position, T]:
        """Apply ``change`` to a live type; a rename moves its name claim in the same
        append, a delete releases it."""

        async def attempt() -> tuple[Position, T]:
            vtype = await self.find_type(type_id)
            old_name = vtype.name
            result = change(vtype)
            touched: list[Any] = [vtype]
            if vtype.deleted or vtype.name != old_name:
                old = await self.store.load(name_claim_id(old_name), TypeNameClaim)
                if old is not None:
                    old.release()
                    touched.append(old)
            if not vtype.deleted and vtype.name != old_name:
                new = await self.store.load(name_claim_id(vtype.name), TypeNameClaim)
                if new is None:
                    new = TypeNameClaim.start(vtype.name, vtype.tid)
                else:
                    new.claim(vtype.tid)
                touched.append(new)
            return await self.store.save(*touched, meta=meta), result

        done: tuple[Position, T] = await self._retrying("change type", attempt)
        return done
