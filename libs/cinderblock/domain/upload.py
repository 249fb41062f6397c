"""os-volume_upload_image: the volume's bytes become an image. A mixin of Volume with
explicit events; the upload saga copies the data and ends in Uploaded or UploadFailed."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain.errors import InvalidVolumeError
from cinderblock.domain.pending import Kind, PendingOperation, UploadPayload
from cinderblock.domain.status import Status


def _after_upload(volume: Any) -> Status:
    """Success or failure, the volume returns by its attachments (Cinder)."""
    return Status.IN_USE if volume.attachments else Status.AVAILABLE


class Upload:
    status: Status
    vid: str

    class UploadRequested(Aggregate.Event):
        image_id: str
        image_name: str
        disk_format: str
        container_format: str
        visibility: str
        protected: bool
        previous_status: str

        def apply(self, volume: Any) -> None:
            volume.previous_status = Status(self.previous_status)
            volume.status = Status.UPLOADING
            volume._begin(Kind.UPLOAD, UploadPayload(self.image_id))

    class Uploaded(Aggregate.Event):
        image_id: str
        checksum: str
        status: str

        def apply(self, volume: Any) -> None:
            volume.status = Status(self.status)
            volume._end(Kind.UPLOAD)

    class UploadFailed(Aggregate.Event):
        image_id: str
        reason: str
        status: str

        def apply(self, volume: Any) -> None:
            volume.status = Status(self.status)
            volume._end(Kind.UPLOAD)

    def request_upload(
        self,
        image_id: str,
        *,
        image_name: str,
        disk_format: str,
        container_format: str,
        visibility: str,
        protected: bool,
        force: bool,
    ) -> None:
        """From ``available`` (or ``in-use`` when force is in effect)."""
        allowed = {Status.AVAILABLE, Status.IN_USE} if force else {Status.AVAILABLE}
        if self.status not in allowed:
            expected = "available or in-use" if force else "available"
            raise InvalidVolumeError(
                f"Volume {self.vid} status must be {expected}, currently {self.status}."
            )
        self.trigger_event(  # type: ignore[attr-defined]
            self.UploadRequested,
            image_id=image_id,
            image_name=image_name,
            disk_format=disk_format,
            container_format=container_format,
            visibility=visibility,
            protected=protected,
            previous_status=self.status.value,
        )

    def upload_pending_for(self, request_version: int) -> PendingOperation[UploadPayload]:
        return self.require_pending(Kind.UPLOAD, request_version)  # type: ignore[attr-defined,no-any-return]

    def complete_upload(self, request_version: int, checksum: str) -> None:
        pending = self.upload_pending_for(request_version)
        self.trigger_event(  # type: ignore[attr-defined]
            self.Uploaded,
            image_id=pending.payload.image_id,
            checksum=checksum,
            status=_after_upload(self).value,
        )

    def fail_upload(self, request_version: int, reason: str) -> None:
        pending = self.upload_pending_for(request_version)
        self.trigger_event(  # type: ignore[attr-defined]
            self.UploadFailed,
            image_id=pending.payload.image_id,
            reason=reason,
            status=_after_upload(self).value,
        )
