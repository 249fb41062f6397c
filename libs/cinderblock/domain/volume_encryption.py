"""An encrypted volume: its type's encryption, copied at create, and the id of its key.

There is no key manager: the key id is a UUID the service makes (at create, at random; for a
retype into an encrypted type, derived from the volume and the retype request, so a
redelivered saga step names the same key). A retype that changes the encryption always
copies the data into a new image (``Reencrypted`` on success, ``ReencryptFailed`` when the
copy could not be made, e.g. the data does not fit beside the new encryption header).

A mixin of Volume with explicit events."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, uuid5

from eventsourcing.domain import Aggregate

from cinderblock.domain.errors import InvalidVolumeError

MULTIATTACH_ENCRYPTED = "Multiattach cannot be used with encrypted volumes."


def retype_key_id(volume_id: str, request_version: int) -> str:
    """The key id of the copy a retype makes into an encrypted type (deterministic)."""
    return str(uuid5(NAMESPACE_URL, f"cinderblock:volume-key:{volume_id}:{request_version}"))


class VolumeEncryption:
    encryption_key_id: str | None = None
    encryption: dict[str, Any] | None = None
    multiattach: bool
    vid: str

    class EncryptionSet(Aggregate.Event):
        key_id: str
        encryption: dict[str, Any]

        def apply(self, volume: Any) -> None:
            volume.encryption_key_id = self.key_id
            volume.encryption = dict(self.encryption)

    class Reencrypted(Aggregate.Event):
        key_id: str | None
        encryption: dict[str, Any] | None

        def apply(self, volume: Any) -> None:
            volume.encryption_key_id = self.key_id
            volume.encryption = dict(self.encryption) if self.encryption else None
            volume.migration_status = "success"

    class ReencryptFailed(Aggregate.Event):
        reason: str

        def apply(self, volume: Any) -> None:
            volume.migration_status = "error"

    @property
    def encrypted(self) -> bool:
        return self.encryption_key_id is not None

    def set_encryption(self, key_id: str, encryption: dict[str, Any]) -> None:
        """At create, in the append that creates the volume."""
        if self.multiattach:
            raise InvalidVolumeError(MULTIATTACH_ENCRYPTED)
        self._trigger_encryption(self.EncryptionSet, key_id=key_id, encryption=dict(encryption))

    def record_reencrypted(self, key_id: str | None, encryption: dict[str, Any] | None) -> None:
        """The retype's copy with the new encryption is in place (before ``Retyped``)."""
        self._trigger_encryption(
            self.Reencrypted, key_id=key_id, encryption=dict(encryption) if encryption else None
        )

    def record_reencrypt_failed(self, reason: str) -> None:
        """The retype's copy could not be made (before ``RetypeFailed``)."""
        self._trigger_encryption(self.ReencryptFailed, reason=reason)

    def _trigger_encryption(self, event_class: type[Aggregate.Event], **kwargs: Any) -> None:
        self.trigger_event(event_class, **kwargs)  # type: ignore[attr-defined]
