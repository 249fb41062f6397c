"""Volume-type encryption (Cinder's ``encryption`` resource of a type): provider, cipher,
key size and control location. A mixin of VolumeType with explicit events; the rule that a
type in use cannot change its encryption is the command service's (it needs the volumes).

Volumes take a copy of their type's encryption when they are created (and a key id), so a
type's later change never alters an existing volume."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain.errors import VolumeError

ENCRYPTION_FIELDS = ("provider", "cipher", "key_size", "control_location")
"""What defines an encryption (Cinder ignores the ids and timestamps when it compares)."""

CONTROL_LOCATIONS = ("front-end", "back-end")


class EncryptionNotFoundError(VolumeError):
    """Raised when a type has no encryption (or no such encryption item): 404."""

    code = "encryption_not_found"

    def __init__(self, type_id: str) -> None:
        super().__init__(f"Volume type encryption for type {type_id} does not exist.")


class EncryptionExistsError(VolumeError):
    """Raised when a type already has an encryption (Cinder's Invalid subclass: 400)."""

    code = "encryption_exists"

    def __init__(self, type_id: str) -> None:
        super().__init__(f"Volume type encryption for type {type_id} already exists.")


def same_encryption(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two encryptions are the same for a retype (Cinder's
    ``volume_types_encryption_changed``, inverted): ids and timestamps do not count."""
    if a is None or b is None:
        return a is None and b is None
    return all(a.get(key) == b.get(key) for key in ENCRYPTION_FIELDS)


class TypeEncryption:
    """State: ``encryption`` is None or a dict of ``ENCRYPTION_FIELDS`` plus
    ``encryption_id``; ``encryption_created_at``/``encryption_updated_at`` come from the
    events' timestamps (the read model shows them)."""

    encryption: dict[str, Any] | None = None
    tid: str

    class EncryptionCreated(Aggregate.Event):
        encryption_id: str
        provider: str
        cipher: str | None
        key_size: int | None
        control_location: str

        def apply(self, vtype: Any) -> None:
            vtype.encryption = {
                "encryption_id": self.encryption_id,
                "provider": self.provider,
                "cipher": self.cipher,
                "key_size": self.key_size,
                "control_location": self.control_location,
            }

    class EncryptionUpdated(Aggregate.Event):
        changes: dict[str, Any]

        def apply(self, vtype: Any) -> None:
            vtype.encryption = {**vtype.encryption, **self.changes}

    class EncryptionDeleted(Aggregate.Event):
        def apply(self, vtype: Any) -> None:
            vtype.encryption = None

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    def create_encryption(self, encryption_id: str, specs: dict[str, Any]) -> None:
        """``specs`` is a checked request (provider and control_location present)."""
        if self.encryption is not None:
            raise EncryptionExistsError(self.tid)
        self._trigger(
            self.EncryptionCreated,
            encryption_id=encryption_id,
            provider=specs["provider"],
            cipher=specs.get("cipher"),
            key_size=specs.get("key_size"),
            control_location=specs["control_location"],
        )

    def update_encryption(self, changes: dict[str, Any]) -> None:
        if self.encryption is None:
            raise EncryptionNotFoundError(self.tid)
        known = {k: v for k, v in changes.items() if k in ENCRYPTION_FIELDS}
        if known:
            self._trigger(self.EncryptionUpdated, changes=known)

    def delete_encryption(self) -> None:
        if self.encryption is None:
            raise EncryptionNotFoundError(self.tid)
        self._trigger(self.EncryptionDeleted)

    def _trigger(self, event_class: type[Aggregate.Event], **kwargs: Any) -> None:
        self.trigger_event(event_class, **kwargs)  # type: ignore[attr-defined]
