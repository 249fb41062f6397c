"""Admin and metadata actions of a volume: reset status, image ("Glance") metadata.

A mixin of Volume, in the same explicit-event style as ``attachments``.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain.attachments import recompute
from cinderblock.domain.errors import InvalidVolumeError, MetadataNotFoundError, VolumeError
from cinderblock.domain.status import AttachStatus, Status

# Cinder meant to refuse 'error_deleting' and 'detaching' too, but a missing comma made it
# refuse only 'deleting' (a spec QUIRK); admins rely on resetting to the other two, so they
# are accepted, as Cinder does.
NOT_RESETTABLE = frozenset({Status.DELETING})


class AdminActions:
    """Expects the Volume attributes ``status``, ``attach_status``, ``migration_status``,
    ``attachments``, ``admin_metadata`` and ``image_metadata``."""

    status: Status
    attach_status: AttachStatus
    migration_status: str | None
    attachments: dict[str, dict[str, Any]]
    admin_metadata: dict[str, str]
    image_metadata: dict[str, str]
    vid: str

    class StatusReset(Aggregate.Event):
        status: str
        attach_status: str
        migration_status: str | None
        removed_attachments: list[str]

        def apply(self, volume: Any) -> None:
            for attachment_id in self.removed_attachments:
                volume.attachments.pop(attachment_id, None)
            if self.removed_attachments:
                volume.admin_metadata.pop("attached_mode", None)
            volume.status = Status(self.status)
            volume.attach_status = AttachStatus(self.attach_status)
            volume.migration_status = self.migration_status

    class ImageMetadataSet(Aggregate.Event):
        metadata: dict[str, str]

        def apply(self, volume: Any) -> None:
            volume.image_metadata.update(self.metadata)

    class ImageMetadataUnset(Aggregate.Event):
        key: str

        def apply(self, volume: Any) -> None:
            volume.image_metadata.pop(self.key, None)

    def reset_status(
        self,
        *,
        status: str | None,
        attach_status: str | None,
        migration_status: str | None,
        migration_given: bool,
    ) -> None:
        """os-reset_status (admin): write what was given, whatever the current status.

        ``attach_status: detached`` also removes every attachment; the statuses are then
        recomputed, except a ``status`` given in the same request, which sticks (Cinder
        lets the recomputation override it: a QUIRK we fix).
        """
        if status is not None and Status(status) in NOT_RESETTABLE:
            raise VolumeError(f"Cannot reset-state to {status}")
        live = [a for a in self.attachments.values() if a["attach_status"] != "detached"]
        if status == Status.IN_USE and (not live or attach_status == AttachStatus.DETACHED):
            raise VolumeError(
                "Cannot reset-state to in-use because volume does not have any attachments."
            )
        new_status = status or self.status.value
        new_attach = attach_status or self.attach_status.value
        new_migration = migration_status if migration_given else self.migration_status
        removed: list[str] = []
        if attach_status == AttachStatus.DETACHED and self.attachments:
            removed = list(self.attachments)
            recomputed, new_attach = recompute({}, new_status, new_migration)
            new_status = status or recomputed
        self.trigger_event(  # type: ignore[attr-defined]
            self.StatusReset,
            status=new_status,
            attach_status=new_attach,
            migration_status=new_migration,
            removed_attachments=removed,
        )

    def _metadata_writable(self, verb: str) -> None:
        """Cinder's volume API refuses ``Updating``/``Deleting`` metadata in these."""
        if self.status in (Status.MAINTENANCE, Status.UPLOADING):
            raise InvalidVolumeError(
                f"{verb} volume metadata is not allowed for volumes in {self.status} status."
            )

    def set_image_metadata(self, metadata: dict[str, str]) -> dict[str, str]:
        """os-set_image_metadata: add or overwrite keys; returns the whole set after."""
        self._metadata_writable("Updating")
        if metadata:
            self.trigger_event(self.ImageMetadataSet, metadata=dict(metadata))  # type: ignore[attr-defined]
        return dict(self.image_metadata)

    def unset_image_metadata(self, key: str) -> None:
        """os-unset_image_metadata: 404 when the volume has no such key."""
        if key not in self.image_metadata:
            raise MetadataNotFoundError(self.vid)
        self._metadata_writable("Deleting")
        self.trigger_event(self.ImageMetadataUnset, key=key)  # type: ignore[attr-defined]
