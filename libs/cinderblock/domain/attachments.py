"""Attachment bookkeeping of a volume (the legacy attach actions): reserve, attach, detach,
begin/roll back detaching, terminate connection, force detach, read-only flag; and the
exports to connectors that initialize_connection, the attachments API and the detaching
actions hand to the export saga (``exports``).

A mixin of Volume. Its events carry their own ``apply`` (evolve); the public methods check
Cinder's rules (decide) and trigger them. Requests that change nothing append nothing.
"""

from __future__ import annotations

import re
from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain import exports
from cinderblock.domain.errors import (
    AttachmentConflictError,
    InvalidInputError,
    InvalidVolumeError,
)
from cinderblock.domain.pending import ExportPayload, Kind, UnexportPayload
from cinderblock.domain.status import NOT_MIGRATING, AttachStatus, Status

# Attachment row statuses that still hold the volume (a detached row is gone).
_ERROR_PREFIX = "error_"


def sanitize_host(host_name: str | None) -> str | None:
    """Host names as Cinder stores them: Latin-1 only, spaces/underscores → '-', other
    non-word characters removed, lower case, no leading/trailing '.' or '-'."""
    if host_name is None:
        return None
    latin = host_name.encode("latin-1", "ignore").decode("latin-1")
    dashed = re.sub(r"[ _]", "-", latin)
    cleaned = re.sub(r"[^\w.-]", "", dashed).lower()
    return cleaned.strip(".-")


def recompute(
    attachments: dict[str, dict[str, Any]], status: str, migration_status: str | None
) -> tuple[str, str]:
    """Volume (status, attach_status) from its remaining attachment rows (spec §5.3.4): the
    alphabetically first non-error attach status wins; none → detached. A detached result
    leaves the status alone while migrating or uploading."""
    live = sorted(
        a["attach_status"]
        for a in attachments.values()
        if not a["attach_status"].startswith(_ERROR_PREFIX)
    )
    attach_status = live[0] if live else AttachStatus.DETACHED.value
    if attach_status == AttachStatus.ATTACHED:
        return Status.IN_USE.value, attach_status
    if attach_status != AttachStatus.DETACHED:
        return attach_status, attach_status
    migrating = migration_status not in (None, "success", "error")
    if migrating or status == Status.UPLOADING:
        return status, attach_status
    return Status.AVAILABLE.value, attach_status


def _conflict(instance_uuid: str | None) -> AttachmentConflictError:
    return AttachmentConflictError(
        f"Detach volume from instance {instance_uuid or ''} using the Compute API"
    )


class Attachments(exports.ExportRules):
    """Volume's attachment rules. Expects the Volume attributes ``status``,
    ``attach_status``, ``migration_status``, ``multiattach``, ``attachments`` (id → row)
    and ``admin_metadata``."""

    status: Status
    attach_status: AttachStatus
    migration_status: str | None
    multiattach: bool
    attachments: dict[str, dict[str, Any]]
    admin_metadata: dict[str, str]
    vid: str

    class Reserved(Aggregate.Event):
        def apply(self, volume: Any) -> None:
            volume.status = Status.ATTACHING

    class Unreserved(Aggregate.Event):
        status: str

        def apply(self, volume: Any) -> None:
            volume.status = Status(self.status)

    class Attached(Aggregate.Event):
        attachment_id: str
        instance_uuid: str | None
        attached_host: str | None
        mountpoint: str | None  # None: a swap moved an attachment that had none yet
        mode: str

        def apply(self, volume: Any) -> None:
            volume.admin_metadata.setdefault("readonly", "False")
            volume.admin_metadata["attached_mode"] = self.mode
            volume.attachments[self.attachment_id] = {
                "instance_uuid": self.instance_uuid,
                "attached_host": self.attached_host,
                "mountpoint": self.mountpoint,
                "attach_status": AttachStatus.ATTACHED.value,
                "attach_mode": self.mode,
                "attach_time": self.timestamp.isoformat(),
            }
            volume.status = Status.IN_USE
            volume.attach_status = AttachStatus.ATTACHED

    class Detached(Aggregate.Event):
        attachment_id: str | None  # None: no attachment was left, statuses reset
        status: str
        attach_status: str

        def apply(self, volume: Any) -> None:
            if self.attachment_id is not None:
                volume.attachments.pop(self.attachment_id, None)
                volume.admin_metadata.pop("attached_mode", None)
            volume.status = Status(self.status)
            volume.attach_status = AttachStatus(self.attach_status)

    class DetachingBegun(Aggregate.Event):
        def apply(self, volume: Any) -> None:
            volume.status = Status.DETACHING

    class DetachingRolledBack(Aggregate.Event):
        def apply(self, volume: Any) -> None:
            volume.status = Status.IN_USE

    class ReadonlyFlagUpdated(Aggregate.Event):
        readonly: bool

        def apply(self, volume: Any) -> None:
            volume.admin_metadata["readonly"] = "True" if self.readonly else "False"

    # Exports (the export saga's work; none of these changes a read-model row).

    class ExportRequested(Aggregate.Event):
        """Export the volume to ``connector``: an attachment's (``attachment_id``) or a
        legacy connection's. ``reserved``: the attachment was reserved by the same request,
        so a failed export takes it back."""

        export_id: str
        attachment_id: str | None
        connector: Any
        mode: str
        reserved: bool

        def apply(self, volume: Any) -> None:
            volume._begin(
                Kind.EXPORT,
                ExportPayload(
                    export_id=self.export_id,
                    attachment_id=self.attachment_id,
                    connector=self.connector,
                    mode=self.mode,
                    reserved=self.reserved,
                ),
            )

    class ExportCreated(Aggregate.Event):
        """The backend exported the volume for the request at ``request_version``."""

        export_id: str
        request_version: int
        attachment_id: str | None
        identity: str | None
        connection_info: dict[str, Any]

        def apply(self, volume: Any) -> None:
            volume._end(Kind.EXPORT, self.request_version)
            exports.registry(volume)[self.export_id] = {
                "attachment_id": self.attachment_id,
                "identity": self.identity,
            }

    class ExportFailed(Aggregate.Event):
        export_id: str
        request_version: int
        reason: str

        def apply(self, volume: Any) -> None:
            volume._end(Kind.EXPORT, self.request_version)

    class UnexportRequested(Aggregate.Event):
        """Remove ``export_ids`` from the backend, then record ``then`` (``detach``,
        ``terminate``, ``force_detach`` or ``delete_attachment``) of ``attachment_id``."""

        export_ids: list[str]
        then: str
        attachment_id: str | None

        def apply(self, volume: Any) -> None:
            volume._begin(
                Kind.UNEXPORT,
                UnexportPayload(
                    export_ids=list(self.export_ids),
                    then=self.then,
                    attachment_id=self.attachment_id,
                ),
            )

    class ExportsRemoved(Aggregate.Event):
        request_version: int
        export_ids: list[str]

        def apply(self, volume: Any) -> None:
            volume._end(Kind.UNEXPORT, self.request_version)
            for export_id in self.export_ids:
                exports.registry(volume).pop(export_id, None)

    class UnexportFailed(Aggregate.Event):
        request_version: int
        reason: str

        def apply(self, volume: Any) -> None:
            volume._end(Kind.UNEXPORT, self.request_version)

    # ------------------------------------------------------------------ rules

    def _not_maintenance(self) -> None:
        if self.status == Status.MAINTENANCE:
            raise InvalidVolumeError(f"Volume {self.vid} is in maintenance.")

    def _has_live_attachment(self) -> bool:
        return any(a["attach_status"] != AttachStatus.DETACHED for a in self.attachments.values())

    def reserve(self) -> None:
        """os-reserve: available (multiattach: also in-use) → attaching."""
        allowed = {Status.AVAILABLE, Status.IN_USE} if self.multiattach else {Status.AVAILABLE}
        if self.status not in allowed:
            expected = "available or in-use" if self.multiattach else "available"
            raise InvalidVolumeError(
                f"Volume status must be {expected} to reserve, but the status is {self.status}."
            )
        self.trigger_event(self.Reserved)  # type: ignore[attr-defined]

    def unreserve(self) -> None:
        """os-unreserve: only from attaching, to in-use or available by attachment rows."""
        if self.status != Status.ATTACHING:
            return
        status = Status.IN_USE if self._has_live_attachment() else Status.AVAILABLE
        self.trigger_event(self.Unreserved, status=status.value)  # type: ignore[attr-defined]

    def begin_detaching(self) -> None:
        """os-begin_detaching: in-use and attached and not migrating → detaching; a volume
        being migrated is left alone without error."""
        if (
            self.status == Status.IN_USE
            and self.attach_status == AttachStatus.ATTACHED
            and self.migration_status in NOT_MIGRATING
        ):
            self.trigger_event(self.DetachingBegun)  # type: ignore[attr-defined]
            return
        if self.migration_status not in NOT_MIGRATING:
            return
        raise InvalidVolumeError(
            "Volume status must be 'in-use' and attach_status must be 'attached' to begin "
            f"detaching, currently status {self.status} and attach_status {self.attach_status}."
        )

    def roll_detaching(self) -> None:
        """os-roll_detaching: detaching → in-use; anything else is left alone."""
        if self.status == Status.DETACHING:
            self.trigger_event(self.DetachingRolledBack)  # type: ignore[attr-defined]

    def attach(
        self,
        attachment_id: str,
        *,
        mountpoint: str | None,
        mode: str,
        instance_uuid: str | None,
        host_name: str | None,
    ) -> None:
        """os-attach: record a finished attachment (status in-use)."""
        self._not_maintenance()
        if self.admin_metadata.get("readonly") == "True" and mode != "ro":
            raise InvalidInputError(f"Invalid attaching mode '{mode}' for volume {self.vid}.")
        attached_mode = self.admin_metadata.get("attached_mode")
        if self.status == Status.ATTACHING and attached_mode and attached_mode != mode:
            raise InvalidVolumeError("being attached by different mode")
        host = sanitize_host(host_name) or None
        for row in self.attachments.values():
            same = (
                (row["instance_uuid"] == instance_uuid)
                if instance_uuid
                else (row["attached_host"] == host)
            )
            if same and row["attach_status"] != AttachStatus.DETACHED:
                if self.status != Status.IN_USE:
                    self.trigger_event(self.Unreserved, status=Status.IN_USE.value)  # type: ignore[attr-defined]
                return
        if self.status == Status.IN_USE and not self.multiattach and self.migration_status is None:
            raise InvalidVolumeError(
                "volume is already attached and multiple attachments are not enabled"
            )
        self.trigger_event(  # type: ignore[attr-defined]
            self.Attached,
            attachment_id=attachment_id,
            instance_uuid=instance_uuid,
            attached_host=host,
            mountpoint=mountpoint,
            mode=mode,
        )

    def _safety_check(self, attachment_id: str | None) -> None:
        """Cinder's attachment check before a detach or terminate, the part that needs no
        Nova (the API asks Nova first when one is configured: api/nova_guard.py)."""
        if attachment_id is None:
            if len(self.attachments) >= 2:
                raise _conflict(None)
            return
        if attachment_id not in self.attachments:
            raise _conflict(None)

    def detach(self, attachment_id: str | None, *, service: bool = False) -> None:
        """os-detach: remove one attachment and recompute the volume's statuses."""
        if not service:
            self._safety_check(attachment_id)
        self._not_maintenance()
        if attachment_id is None:
            if len(self.attachments) > 1:
                raise InvalidVolumeError("More than one attachment, but no attachment_id provided")
            if not self.attachments:
                if (self.status, self.attach_status) != (Status.AVAILABLE, AttachStatus.DETACHED):
                    self.trigger_event(  # type: ignore[attr-defined]
                        self.Detached,
                        attachment_id=None,
                        status=Status.AVAILABLE.value,
                        attach_status=AttachStatus.DETACHED.value,
                    )
                return
            attachment_id = next(iter(self.attachments))
        elif attachment_id not in self.attachments:
            status, attach_status = recompute(self.attachments, self.status, self.migration_status)
            self.trigger_event(  # type: ignore[attr-defined]
                self.Detached,
                attachment_id=None,
                status=status,
                attach_status=attach_status,
            )
            return
        remaining = {k: v for k, v in self.attachments.items() if k != attachment_id}
        status, attach_status = recompute(remaining, self.status, self.migration_status)
        self.trigger_event(  # type: ignore[attr-defined]
            self.Detached,
            attachment_id=attachment_id,
            status=status,
            attach_status=attach_status,
        )

    def terminate_connection(self, *, service: bool = False) -> None:
        """os-terminate_connection: the safety check (not for service callers), then
        unreserve semantics."""
        if not service:
            self._safety_check(None)
        self.unreserve()

    def force_detach(self, attachment_id: str | None, *, service: bool = False) -> None:
        """os-force_detach: terminate the connection, then detach (admin)."""
        self.terminate_connection(service=service)
        self.detach(attachment_id, service=service)

    def update_readonly_flag(self, readonly: bool) -> None:
        """os-update_readonly_flag: only while exactly available."""
        if self.status != Status.AVAILABLE:
            raise InvalidVolumeError("Volume status must be available to update readonly flag.")
        self.trigger_event(self.ReadonlyFlagUpdated, readonly=readonly)  # type: ignore[attr-defined]

    def access_mode(self) -> str:
        """What a new connection gets: the attached mode, else ro when read-only, else rw."""
        attached_mode = self.admin_metadata.get("attached_mode")
        if attached_mode:
            return attached_mode
        return "ro" if self.admin_metadata.get("readonly") == "True" else "rw"

    def check_connectable(self) -> None:
        """os-initialize_connection precondition."""
        self._not_maintenance()
