"""The attachments API (3.27+) on the Volume aggregate: reserve, connect, complete and
delete an attachment; it shares the attachment rows and the status recomputation with the
legacy actions (spec §5.3). A mixin of Volume with explicit events."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain import exports
from cinderblock.domain.attachments import recompute
from cinderblock.domain.errors import (
    AttachmentConflictError,
    InvalidVolumeError,
    VolumeError,
)
from cinderblock.domain.status import AttachStatus, Status


class AttachmentNotFoundError(VolumeError):
    """Raised when the volume has no such attachment (404)."""

    code = "attachment_not_found"

    def __init__(self, attachment_id: str) -> None:
        super().__init__(f"VolumeAttachment {attachment_id} could not be found.")


class AttachmentsApi:
    status: Status
    attach_status: AttachStatus
    migration_status: str | None
    multiattach: bool
    attachments: dict[str, dict[str, Any]]
    admin_metadata: dict[str, str]
    vid: str

    class AttachmentReserved(Aggregate.Event):
        attachment_id: str
        instance_uuid: str | None
        mode: str
        status: str  # the volume's status after (reserved, or unchanged)

        def apply(self, volume: Any) -> None:
            volume.attachments[self.attachment_id] = {
                "instance_uuid": self.instance_uuid,
                "attached_host": None,
                "mountpoint": None,
                "attach_status": AttachStatus.RESERVED.value,
                "attach_mode": self.mode,
                "attach_time": None,
                "connection_info": None,
            }
            volume.status = Status(self.status)

    class AttachmentConnected(Aggregate.Event):
        attachment_id: str
        attached_host: str | None
        mountpoint: str
        mode: str
        connector: dict[str, Any]
        connection_info: dict[str, Any]

        def apply(self, volume: Any) -> None:
            row = volume.attachments[self.attachment_id]
            row.update(
                attach_status=AttachStatus.ATTACHING.value,
                attached_host=self.attached_host,
                mountpoint=self.mountpoint,
                attach_mode=self.mode,
                connector=self.connector,
                connection_info=self.connection_info,
            )
            volume.status = Status.ATTACHING
            volume.attach_status = AttachStatus.ATTACHING

    class AttachmentCompleted(Aggregate.Event):
        attachment_id: str

        def apply(self, volume: Any) -> None:
            row = volume.attachments[self.attachment_id]
            row.update(
                attach_status=AttachStatus.ATTACHED.value, attach_time=self.timestamp.isoformat()
            )
            volume.status = Status.IN_USE
            volume.attach_status = AttachStatus.ATTACHED

    def _row(self, attachment_id: str) -> dict[str, Any]:
        row = self.attachments.get(attachment_id)
        if row is None:
            raise AttachmentNotFoundError(attachment_id)
        return row

    def create_attachment(
        self, attachment_id: str, *, instance_uuid: str | None, mode: str | None
    ) -> None:
        """POST /attachments: reserve the volume for an instance."""
        if "error" in self.status:
            raise InvalidVolumeError(
                f"Volume {self.vid} status must not be an error status "
                f"to attach, currently {self.status}."
            )
        allowed = {Status.AVAILABLE, Status.DOWNLOADING}
        if self.multiattach:
            allowed.add(Status.IN_USE)
        status = self.status
        if self.status in allowed:
            status = Status.RESERVED
        elif not (
            instance_uuid
            and self.status in (Status.IN_USE, Status.RESERVED)
            and any(row["instance_uuid"] == instance_uuid for row in self.attachments.values())
        ):
            raise InvalidVolumeError(
                f"Volume {self.vid} status must be available or "
                f"downloading to reserve, currently {self.status}."
            )
        # Cinder forces ro whenever any readonly entry exists, even "False": a QUIRK.
        readonly = self.admin_metadata.get("readonly") == "True"
        self.trigger_event(  # type: ignore[attr-defined]
            self.AttachmentReserved,
            attachment_id=attachment_id,
            instance_uuid=instance_uuid,
            mode="ro" if readonly else (mode or "null"),
            status=status.value,
        )

    def attachment_mode(self, attachment_id: str, connector: dict[str, Any]) -> str:
        mode = str(self._row(attachment_id)["attach_mode"])
        return str(connector.get("mode") or "rw") if mode == "null" else mode

    def _check_connector(self, attachment_id: str, connector: dict[str, Any]) -> None:
        """PUT /attachments/{id}'s rules: not in an error status; a volume that is not
        multiattach has no other attachment on the connector's host (409 both)."""
        row = self._row(attachment_id)
        if "error" in self.status:
            raise AttachmentConflictError(f"Volume {self.vid} is in an error status.")
        host = connector.get("host")
        if not self.multiattach and any(
            other.get("attached_host") == host and other is not row and host
            for other in self.attachments.values()
        ):
            raise AttachmentConflictError(f"Volume {self.vid} is already attached to {host}.")

    def request_attachment_export(
        self, attachment_id: str, connector: dict[str, Any], *, reserved: bool = False
    ) -> int:
        """PUT /attachments/{id} (and POST with a connector, ``reserved``): the host's
        connector arrives; the export saga asks the backend for the export and records the
        connection (``complete_export``) or the failure (``fail_export``). Returns the
        request's version."""
        self._check_connector(attachment_id, connector)
        self.trigger_event(  # type: ignore[attr-defined]
            self.ExportRequested,  # type: ignore[attr-defined]
            export_id=attachment_id,
            attachment_id=attachment_id,
            connector=dict(connector),
            mode=self.attachment_mode(attachment_id, connector),
            reserved=reserved,
        )
        return int(self.version)  # type: ignore[attr-defined]

    def request_attachment_delete(self, attachment_id: str) -> int | None:
        """DELETE /attachments/{id}: the attachment's export is removed by the export saga
        first, which then deletes it (returns the request's version); an attachment without
        an export is deleted at once (None)."""
        self._row(attachment_id)
        held = exports.registry(self)
        own = sorted(e for e, x in held.items() if x["attachment_id"] == attachment_id)
        if not own:
            self.delete_attachment(attachment_id)
            return None
        self.trigger_event(  # type: ignore[attr-defined]
            self.UnexportRequested,  # type: ignore[attr-defined]
            export_ids=own,
            then="delete_attachment",
            attachment_id=attachment_id,
        )
        return int(self.version)  # type: ignore[attr-defined]

    def connect_attachment(
        self, attachment_id: str, connector: dict[str, Any], connection_info: dict[str, Any]
    ) -> None:
        """Record a connection made elsewhere (bookkeeping only, no export: the bench's
        generated logs); the API asks the export saga (``request_attachment_export``)."""
        self._check_connector(attachment_id, connector)
        host = connector.get("host")
        self.trigger_event(  # type: ignore[attr-defined]
            self.AttachmentConnected,
            attachment_id=attachment_id,
            attached_host=host,
            mountpoint=str(connector.get("mountpoint") or "na"),
            mode=self.attachment_mode(attachment_id, connector),
            connector=dict(connector),
            connection_info=dict(connection_info),
        )

    def complete_attachment(self, attachment_id: str) -> None:
        """POST /attachments/{id}/action os-complete (3.44+)."""
        self._row(attachment_id)
        self.trigger_event(self.AttachmentCompleted, attachment_id=attachment_id)  # type: ignore[attr-defined]

    def delete_attachment(self, attachment_id: str) -> None:
        """DELETE /attachments/{id}: the attachment is known (so the safety check passes
        without Nova, spec §7.1), then the volume's statuses are recomputed."""
        self._row(attachment_id)
        remaining = {k: v for k, v in self.attachments.items() if k != attachment_id}
        status, attach_status = recompute(remaining, self.status, self.migration_status)
        self.trigger_event(  # type: ignore[attr-defined]
            self.Detached,
            attachment_id=attachment_id,
            status=status,
            attach_status=attach_status,
        )
