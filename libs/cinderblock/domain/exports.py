"""A volume's exports to connectors, as the volume remembers them: which exports a backend
holds for it (made by the export saga), and the export and unexport requests handed to that
saga and not yet settled; and the rules that ask for them and settle them (``ExportRules``,
a base of the ``attachments`` mixin, where the events live: eventsourcing re-declares on
the aggregate only the events of its direct bases).

What the backend holds sits on the aggregate in ``export_registry`` (created on first use:
aggregates stored before exports existed have none): export id → ``{"attachment_id",
"identity"}``, one per export the backend made (``ExportCreated``) and has not removed
(``ExportsRemoved``). The requests handed to the saga are pending operations
(``domain.pending``, kinds ``export`` and ``unexport``, several at once), ended by the
outcome that names their version; ``export_requests`` / ``unexport_requests`` read them as
request version → the request's fields.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from cinderblock.domain.errors import InvalidVolumeError, StaleCommandError, VolumeError
from cinderblock.domain.pending import Kind, PendingOperation

LEGACY_PREFIX = "host-"
"""Export ids of legacy connections (os-initialize_connection) start with this; an
attachment's export id is the attachment's id."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _state(volume: Any, name: str) -> dict[Any, Any]:
    found: dict[Any, Any] | None = volume.__dict__.get(name)
    if found is None:
        found = volume.__dict__[name] = {}
    return found


def registry(volume: Any) -> dict[str, dict[str, Any]]:
    return _state(volume, "export_registry")


def _requests(volume: Any, kind: Kind) -> dict[int, dict[str, Any]]:
    return {op.request_version: dataclasses.asdict(op.payload) for op in volume.pending_all(kind)}


def export_requests(volume: Any) -> dict[int, dict[str, Any]]:
    """The unsettled export requests: request version → the request's fields."""
    return _requests(volume, Kind.EXPORT)


def unexport_requests(volume: Any) -> dict[int, dict[str, Any]]:
    """The unsettled unexport requests: request version → the request's fields."""
    return _requests(volume, Kind.UNEXPORT)


def _fields(op: PendingOperation[Any] | None) -> dict[str, Any] | None:
    return dataclasses.asdict(op.payload) if op is not None else None


def connector_identity(connector: object) -> str | None:
    """Who a connector is: its ``host``, else its ``initiator``; a string connector is
    itself; anything else is unknown (None)."""
    if isinstance(connector, str):
        return connector or None
    if isinstance(connector, Mapping):
        for key in ("host", "initiator"):
            value = connector.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def legacy_export_id(connector: object) -> str:
    """The export id of a legacy connection: one per connector identity, a safe file name
    (``host-compute-1``; ``host-unknown`` when the connector names nobody)."""
    identity = connector_identity(connector)
    safe = _UNSAFE.sub("-", identity or "").strip(".-_")[:200]
    return f"{LEGACY_PREFIX}{safe or 'unknown'}"


def with_attachment_id(info: Mapping[str, Any], attachment_id: str) -> dict[str, Any]:
    """The connection info as an attachment stores it: ``data`` names the attachment."""
    stored = dict(info)
    data = stored.get("data")
    stored["data"] = {**(data if isinstance(data, Mapping) else {}), "attachment_id": attachment_id}
    return stored


class ExportRules:
    """Export and unexport requests of the legacy actions, and their outcomes. Expects the
    Volume attributes and methods of the attachment mixins (``attachments``, ``status``,
    ``detach``, ``unreserve``, ``delete_attachment``, ``access_mode``, the events)."""

    attachments: dict[str, dict[str, Any]]

    def request_connection(self, connector: Any) -> int:
        """os-initialize_connection: ask the backend to export the volume to ``connector``
        (one export per connector identity); returns the request's version, which names
        the saga's outcome."""
        self._not_maintenance()
        self.trigger_event(  # type: ignore[attr-defined]
            self.ExportRequested,
            export_id=legacy_export_id(connector),
            attachment_id=None,
            connector=connector,
            mode=self.access_mode(),
            reserved=False,
        )
        return int(self.version)  # type: ignore[attr-defined]

    def export_request(self, request_version: int) -> dict[str, Any] | None:
        """The export request made at ``request_version``, while it is not settled (the
        one rule: ``pending_at``)."""
        return _fields(self.pending_at(Kind.EXPORT, request_version))  # type: ignore[attr-defined]

    def referenced_exports(self) -> set[str]:
        """The export ids the volume still stands behind: held legacy connections, held
        exports of attachments it still has, and those of unsettled requests. A backend
        export outside these is stale (its attachment was removed without the backend,
        e.g. by os-reset_status) and may go."""
        held = {
            export_id
            for export_id, x in registry(self).items()
            if x["attachment_id"] is None or x["attachment_id"] in self.attachments
        }
        asked = {r["export_id"] for r in export_requests(self).values()}
        leaving = {e for r in unexport_requests(self).values() for e in r["export_ids"]}
        return held | asked | leaving

    def unexport_request(self, request_version: int) -> dict[str, Any] | None:
        """The unexport request made at ``request_version``, while it is not settled."""
        return _fields(self.pending_at(Kind.UNEXPORT, request_version))  # type: ignore[attr-defined]

    def complete_export(self, request_version: int, connection_info: dict[str, Any]) -> bool:
        """The saga made the export: record it, and connect its attachment (attaching, with
        the connection info). False, recording ExportFailed, when the attachment was deleted
        meanwhile: the saga then removes the export again.

        Raises:
            StaleCommandError: the request is settled already (a redelivery).
        """
        request = self._export_request(request_version)
        attachment_id = request["attachment_id"]
        if attachment_id is not None and attachment_id not in self.attachments:
            self.trigger_event(  # type: ignore[attr-defined]
                self.ExportFailed,
                export_id=request["export_id"],
                request_version=request_version,
                reason="the attachment was deleted meanwhile",
            )
            return False
        connector = request["connector"]
        self.trigger_event(  # type: ignore[attr-defined]
            self.ExportCreated,
            export_id=request["export_id"],
            request_version=request_version,
            attachment_id=attachment_id,
            identity=connector_identity(connector),
            connection_info=dict(connection_info),
        )
        if attachment_id is not None:
            self.trigger_event(  # type: ignore[attr-defined]
                self.AttachmentConnected,  # type: ignore[attr-defined]
                attachment_id=attachment_id,
                attached_host=connector.get("host"),
                mountpoint=str(connector.get("mountpoint") or "na"),
                mode=request["mode"],
                connector=dict(connector),
                connection_info=with_attachment_id(connection_info, attachment_id),
            )
        return True

    def fail_export(self, request_version: int, reason: str) -> None:
        """The backend refused or failed the export. An attachment reserved by the same
        request (POST /attachments with a connector) is taken back, the volume's statuses
        recomputed (compensation).

        Raises:
            StaleCommandError: the request is settled already.
        """
        request = self._export_request(request_version)
        self.trigger_event(  # type: ignore[attr-defined]
            self.ExportFailed,
            export_id=request["export_id"],
            request_version=request_version,
            reason=reason,
        )
        row = self.attachments.get(request["attachment_id"] or "")
        if request["reserved"] and row is not None and row["attach_status"] == "reserved":
            self.delete_attachment(request["attachment_id"])

    def _export_request(self, request_version: int) -> dict[str, Any]:
        request = self.export_request(request_version)
        if request is None:
            raise StaleCommandError(f"no export request at version {request_version}")
        return request

    def request_detach(self, attachment_id: str | None, *, service: bool = False) -> int | None:
        """os-detach: as ``detach``, but when the backend holds exports the detach frees
        (the attachment's; the legacy connections' with the last attachment) they are
        removed first, by the export saga, which then records the detach. Returns the
        request's version then, else None (detached at once)."""
        if not service:
            self._safety_check(attachment_id)
        self._not_maintenance()
        target = self._detach_target(attachment_id)
        freed = self._exports_freed_by(target)
        if not freed:
            self.detach(attachment_id, service=True)
            return None
        return self._request_unexport(freed, "detach", target)

    def request_terminate_connection(self, connector: Any, *, service: bool = False) -> int | None:
        """os-terminate_connection: the legacy export of ``connector`` (None: every legacy
        export) is removed by the export saga, then unreserve semantics; without such an
        export, unreserve at once (None)."""
        if not service:
            self._safety_check(None)
        legacy = self._legacy_exports(connector)
        if not legacy:
            self.unreserve()
            return None
        return self._request_unexport(legacy, "terminate", None)

    def request_force_detach(
        self, attachment_id: str | None, connector: Any, *, service: bool = False
    ) -> int | None:
        """os-force_detach: terminate (the connector's legacy exports) and detach (the
        attachment's exports), removed by the export saga first when there are any."""
        if not service:
            self._safety_check(None)
            self._safety_check(attachment_id)
        self._not_maintenance()
        target = self._detach_target(attachment_id)
        freed = sorted(set(self._legacy_exports(connector)) | set(self._exports_freed_by(target)))
        if not freed:
            self.force_detach(attachment_id, service=True)
            return None
        return self._request_unexport(freed, "force_detach", target)

    def finish_unexport(self, request_version: int) -> None:
        """The saga removed the exports: record that, then what the request was for,
        decided against the volume as it is now (an attachment gone meanwhile stays gone).

        Raises:
            StaleCommandError: the request is settled already.
        """
        request = self.unexport_request(request_version)
        if request is None:
            raise StaleCommandError(f"no unexport request at version {request_version}")
        self.trigger_event(  # type: ignore[attr-defined]
            self.ExportsRemoved,
            request_version=request_version,
            export_ids=list(request["export_ids"]),
        )
        then, target = request["then"], request["attachment_id"]
        try:
            if then in ("terminate", "force_detach"):
                self.unreserve()
            if then in ("detach", "force_detach"):
                if target is None and not self.attachments:
                    self.detach(None, service=True)
                elif target is not None and target in self.attachments:
                    self.detach(target, service=True)
            if then == "delete_attachment" and target in self.attachments:
                self.delete_attachment(target)  # type: ignore[attr-defined]
        except VolumeError:
            pass  # the volume moved on (maintenance): the exports are gone all the same

    def fail_unexport(self, request_version: int, reason: str) -> None:
        """The backend could not remove an export: nothing is detached (Cinder answers 500
        and keeps the attachment).

        Raises:
            StaleCommandError: the request is settled already.
        """
        if self.unexport_request(request_version) is None:
            raise StaleCommandError(f"no unexport request at version {request_version}")
        self.trigger_event(  # type: ignore[attr-defined]
            self.UnexportFailed, request_version=request_version, reason=reason
        )

    def _request_unexport(self, export_ids: list[str], then: str, target: str | None) -> int:
        self.trigger_event(  # type: ignore[attr-defined]
            self.UnexportRequested, export_ids=export_ids, then=then, attachment_id=target
        )
        return int(self.version)  # type: ignore[attr-defined]

    def _detach_target(self, attachment_id: str | None) -> str | None:
        """The attachment a detach removes: the one named if the volume has it, else the
        only one (several without a name: Cinder's InvalidVolume)."""
        if attachment_id is not None:
            return attachment_id if attachment_id in self.attachments else None
        if len(self.attachments) > 1:
            raise InvalidVolumeError("More than one attachment, but no attachment_id provided")
        return next(iter(self.attachments), None)

    def _exports_freed_by(self, target: str | None) -> list[str]:
        """The exports a detach of ``target`` frees: the attachment's own; with the last
        attachment gone, the legacy connections' too (Cinder's remove_export)."""
        held = registry(self)
        freed = [e for e, x in held.items() if target is not None and x["attachment_id"] == target]
        if not any(a != target for a in self.attachments):
            freed += [e for e, x in held.items() if x["attachment_id"] is None]
        return sorted(freed)

    def _legacy_exports(self, connector: Any) -> list[str]:
        held = registry(self)
        if connector is None:
            return sorted(e for e, x in held.items() if x["attachment_id"] is None)
        export_id = legacy_export_id(connector)
        return [export_id] if export_id in held else []
