"""What the API asks of one volume, as typed commands: each names the verb and carries the
request's values; ``run`` lets the aggregate decide. The command service runs them
(``store.volumes.Volumes.handle``: load the volume as the caller may see it, authorize,
``run``, append what the aggregate recorded, retried on a conflict), so the HTTP layer
never reaches into the aggregate's methods itself.

``run`` returns what the reply needs: the request's version for work handed to the export
saga (None when it was recorded at once), the merged image metadata, the volume.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cinderblock.domain.errors import VolumeError, VolumeNotFoundError
from cinderblock.domain.volume import Volume

T = TypeVar("T")


class VolumeCommand(ABC, Generic[T]):
    """One change of one volume, decided by the aggregate."""

    @abstractmethod
    def run(self, volume: Volume) -> T:
        """Let ``volume`` decide (it records events or raises a domain error)."""


@dataclass(frozen=True)
class Reserve(VolumeCommand[None]):
    def run(self, volume: Volume) -> None:
        volume.reserve()


@dataclass(frozen=True)
class Unreserve(VolumeCommand[None]):
    def run(self, volume: Volume) -> None:
        volume.unreserve()


@dataclass(frozen=True)
class BeginDetaching(VolumeCommand[None]):
    def run(self, volume: Volume) -> None:
        volume.begin_detaching()


@dataclass(frozen=True)
class RollDetaching(VolumeCommand[None]):
    def run(self, volume: Volume) -> None:
        volume.roll_detaching()


@dataclass(frozen=True)
class Attach(VolumeCommand[None]):
    """os-attach: Nova's bookkeeping of an attachment it made itself."""

    attachment_id: str
    mountpoint: str
    mode: str
    instance_uuid: str | None
    host_name: str | None

    def run(self, volume: Volume) -> None:
        volume.attach(
            self.attachment_id,
            mountpoint=self.mountpoint,
            mode=self.mode,
            instance_uuid=self.instance_uuid,
            host_name=self.host_name,
        )


@dataclass(frozen=True)
class Detach(VolumeCommand[int | None]):
    """os-detach: at once, or (the backend holds exports it frees) through the saga."""

    attachment_id: str | None
    service: bool

    def run(self, volume: Volume) -> int | None:
        return volume.request_detach(self.attachment_id, service=self.service)


@dataclass(frozen=True)
class ForceDetach(VolumeCommand[int | None]):
    attachment_id: str | None
    connector: Any
    service: bool

    def run(self, volume: Volume) -> int | None:
        return volume.request_force_detach(self.attachment_id, self.connector, service=self.service)


@dataclass(frozen=True)
class TerminateConnection(VolumeCommand[int | None]):
    connector: Any
    service: bool

    def run(self, volume: Volume) -> int | None:
        return volume.request_terminate_connection(self.connector, service=self.service)


@dataclass(frozen=True)
class InitializeConnection(VolumeCommand[int]):
    """os-initialize_connection: the export saga exports the volume to ``connector``; a
    volume never placed on a backend is not found (Cinder has no host to ask)."""

    connector: Any

    def run(self, volume: Volume) -> int:
        volume.check_connectable()
        if volume.host is None:
            raise VolumeNotFoundError(volume.vid)
        return volume.request_connection(self.connector)


@dataclass(frozen=True)
class UpdateReadonlyFlag(VolumeCommand[None]):
    readonly: bool

    def run(self, volume: Volume) -> None:
        volume.update_readonly_flag(self.readonly)


@dataclass(frozen=True)
class ResetStatus(VolumeCommand[None]):
    status: str | None
    attach_status: str | None
    migration_status: str | None
    migration_given: bool

    def run(self, volume: Volume) -> None:
        volume.reset_status(
            status=self.status,
            attach_status=self.attach_status,
            migration_status=self.migration_status,
            migration_given=self.migration_given,
        )


@dataclass(frozen=True)
class SetImageMetadata(VolumeCommand[dict[str, str]]):
    metadata: Mapping[str, str]

    def run(self, volume: Volume) -> dict[str, str]:
        return volume.set_image_metadata(dict(self.metadata))


@dataclass(frozen=True)
class UnsetImageMetadata(VolumeCommand[None]):
    key: str

    def run(self, volume: Volume) -> None:
        volume.unset_image_metadata(self.key)


@dataclass(frozen=True)
class StartMigration(VolumeCommand[None]):
    """os-migrate_volume. ``destination_known``: the API found the destination among the
    backends that are up (a cluster is never one); checked after the policy, before the
    volume's own conditions, as Cinder's order is."""

    destination: str
    destination_known: bool
    force_host_copy: bool
    lock_volume: bool

    def run(self, volume: Volume) -> None:
        if not self.destination_known:
            raise VolumeError(f"Invalid host: No available service named '{self.destination}'")
        volume.start_migration(
            self.destination, force_host_copy=self.force_host_copy, lock_volume=self.lock_volume
        )


@dataclass(frozen=True)
class Reimage(VolumeCommand[None]):
    """os-reimage with the image the image service described."""

    image: Mapping[str, Any]
    reimage_reserved: bool

    def run(self, volume: Volume) -> None:
        volume.request_reimage(self.image, reimage_reserved=self.reimage_reserved)


@dataclass(frozen=True)
class UploadToImage(VolumeCommand[Volume]):
    """os-volume_upload_image into the image record made for it; returns the volume (the
    reply shows its fields as the upload starts)."""

    image_id: str
    image_name: str
    disk_format: str
    container_format: str
    visibility: str
    protected: bool
    force: bool

    def run(self, volume: Volume) -> Volume:
        volume.request_upload(
            self.image_id,
            image_name=self.image_name,
            disk_format=self.disk_format,
            container_format=self.container_format,
            visibility=self.visibility,
            protected=self.protected,
            force=self.force,
        )
        return volume
