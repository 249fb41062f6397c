"""Work a volume has handed to a saga and not yet seen settled: one typed shape for every
multi-step flow (extend, migration, retype, revert, upload, reimage, and the exports and
unexports of attach and detach), and the one rule that says whether a saga's outcome still
belongs to it.

A request event starts a `PendingOperation` of its kind at the event's version; the
completion or compensation event ends it. A saga reacting to the request event at version V
may record an outcome only while `pending_at(kind, V)` finds it: a redelivery after the
outcome was recorded, or an outcome of an older request, finds nothing.

Replay builds the same operations from the same events (the request events keep their
fields; nothing stored changes). The aggregate holds them in ``pending_operations``, a dict
by kind (a migration may run beside another operation; kinds of which several may be
pending at once, exports to several connectors, are keyed by kind and version);
``pending_<kind>`` reads one as the plain dict the volume held before (its payload's
fields, ``reservation_id`` when the kind reserves quota, and ``request_version``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from cinderblock.domain.errors import StaleCommandError


class Kind(StrEnum):
    EXTEND = "extend"
    MIGRATION = "migration"
    RETYPE = "retype"
    REVERT = "revert"
    UPLOAD = "upload"
    REIMAGE = "reimage"
    EXPORT = "export"
    UNEXPORT = "unexport"


# Kinds of which several requests may be pending at once, each settled by its own outcome.
MANY = frozenset({Kind.EXPORT, Kind.UNEXPORT})


@dataclass(frozen=True)
class ExtendPayload:
    new_size_gb: int


@dataclass(frozen=True)
class MigrationPayload:
    destination: str
    source: str | None  # the host the data is copied from


@dataclass(frozen=True)
class RetypePayload:
    new_type_id: str
    new_type_name: str
    migration_policy: str
    previous_multiattach: bool


@dataclass(frozen=True)
class RevertPayload:
    snapshot_id: str


@dataclass(frozen=True)
class UploadPayload:
    image_id: str


@dataclass(frozen=True)
class ReimagePayload:
    image_id: str
    image_metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportPayload:
    """Export the volume to ``connector``: an attachment's, or a legacy connection's
    (``attachment_id`` None). ``reserved``: the same request reserved the attachment."""

    export_id: str
    attachment_id: str | None
    connector: Any
    mode: str
    reserved: bool


@dataclass(frozen=True)
class UnexportPayload:
    """Remove ``export_ids``, then record ``then`` of ``attachment_id``."""

    export_ids: list[str]
    then: str
    attachment_id: str | None


PAYLOADS: dict[Kind, type[Any]] = {
    Kind.EXTEND: ExtendPayload,
    Kind.MIGRATION: MigrationPayload,
    Kind.RETYPE: RetypePayload,
    Kind.REVERT: RevertPayload,
    Kind.UPLOAD: UploadPayload,
    Kind.REIMAGE: ReimagePayload,
    Kind.EXPORT: ExportPayload,
    Kind.UNEXPORT: UnexportPayload,
}


def _key(kind: Kind, request_version: int) -> str:
    return f"{kind}@{request_version}" if kind in MANY else str(kind)


P = TypeVar("P")


@dataclass(frozen=True)
class PendingOperation(Generic[P]):
    """One request handed to a saga: its kind, the version of the event that asked for it,
    the quota reservation it holds (extend, retype) and what the saga needs to know."""

    kind: Kind
    request_version: int
    payload: P
    reservation_id: str | None = None

    def is_for(self, kind: Kind, request_version: int) -> bool:
        """THE rule: this is the ``kind`` request made at ``request_version``."""
        return self.kind == kind and self.request_version == request_version

    @property
    def reservation(self) -> str:
        """The quota reservation to commit or release (kinds that reserve quota)."""
        if self.reservation_id is None:
            raise StaleCommandError(f"A {self.kind} holds no quota reservation.")
        return self.reservation_id

    def as_dict(self) -> dict[str, Any]:
        """The plain dict the volume held before this shape (``pending_<kind>``)."""
        found: dict[str, Any] = {
            f.name: getattr(self.payload, f.name) for f in dataclasses.fields(self.payload)
        }
        if self.reservation_id is not None:
            found["reservation_id"] = self.reservation_id
        found["request_version"] = self.request_version
        return found

    def to_state(self) -> dict[str, Any]:
        """JSON-able form (an aggregate snapshot's state)."""
        return {
            "kind": self.kind.value,
            "request_version": self.request_version,
            "reservation_id": self.reservation_id,
            "payload": dataclasses.asdict(self.payload),  # type: ignore[call-overload]
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PendingOperation[Any]:
        kind = Kind(state["kind"])
        return PendingOperation(
            kind=kind,
            request_version=int(state["request_version"]),
            payload=PAYLOADS[kind](**state["payload"]),
            reservation_id=state.get("reservation_id"),
        )


class PendingOperations:
    """Mixin of Volume: the pending operations and the rule, for the domain, the store and
    the saga runners alike."""

    pending_operations: dict[str, PendingOperation[Any]]
    version: int
    vid: str

    def _operations(self) -> dict[str, PendingOperation[Any]]:
        ops: dict[str, PendingOperation[Any]] | None = self.__dict__.get("pending_operations")
        if ops is None:
            ops = self.pending_operations = {}
        return ops

    def pending_at(self, kind: Kind, request_version: int) -> PendingOperation[Any] | None:
        """The ``kind`` operation requested at ``request_version`` while it is pending, else
        None (settled already, never requested, or a newer request replaced it)."""
        op = self._operations().get(_key(kind, request_version))
        return op if op is not None and op.is_for(kind, request_version) else None

    def require_pending(self, kind: Kind, request_version: int) -> PendingOperation[Any]:
        """`pending_at`, or StaleCommandError: an outcome that no longer belongs."""
        op = self.pending_at(kind, request_version)
        if op is None:
            at = "pending at" if kind == Kind.EXTEND else "at"  # the texts as they were
            raise StaleCommandError(f"No {kind} of volume {self.vid} {at} {request_version}.")
        return op

    def pending_of(self, kind: Kind) -> PendingOperation[Any] | None:
        """The ``kind`` operation pending now, whatever version asked for it (kinds pending
        one at a time)."""
        return self._operations().get(kind)

    def pending_all(self, kind: Kind) -> list[PendingOperation[Any]]:
        """Every ``kind`` operation pending now, oldest first."""
        found = [op for op in self._operations().values() if op.kind == kind]
        return sorted(found, key=lambda op: op.request_version)

    # evolve helpers: only request and outcome events call these

    def _begin(self, kind: Kind, payload: Any, reservation_id: str | None = None) -> None:
        """Run from a request event's evolve step: the event is the next version."""
        version = self.version + 1
        self._operations()[_key(kind, version)] = PendingOperation(
            kind, version, payload, reservation_id
        )

    def _end(self, kind: Kind, request_version: int | None = None) -> None:
        """End the ``kind`` operation (of kinds pending several at once: the one requested
        at ``request_version``)."""
        if kind in MANY:
            if request_version is not None:
                self._operations().pop(_key(kind, request_version), None)
            return
        self._operations().pop(kind, None)

    # the dicts the volume held before (read-only views)

    def _legacy(self, kind: Kind) -> dict[str, Any] | None:
        op = self.pending_of(kind)
        return op.as_dict() if op is not None else None

    @property
    def pending_extend(self) -> dict[str, Any] | None:
        return self._legacy(Kind.EXTEND)

    @property
    def pending_migration(self) -> dict[str, Any] | None:
        return self._legacy(Kind.MIGRATION)

    @property
    def pending_retype(self) -> dict[str, Any] | None:
        return self._legacy(Kind.RETYPE)

    @property
    def pending_revert(self) -> dict[str, Any] | None:
        return self._legacy(Kind.REVERT)

    @property
    def pending_upload(self) -> dict[str, Any] | None:
        return self._legacy(Kind.UPLOAD)

    @property
    def pending_reimage(self) -> dict[str, Any] | None:
        return self._legacy(Kind.REIMAGE)
