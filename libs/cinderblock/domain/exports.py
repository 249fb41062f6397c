"""A volume's exports to connectors, as the volume remembers them: which exports a backend
holds for it (made by the export saga), and the export and unexport requests handed to that
saga and not yet settled. Pure helpers of the attachment mixins (``attachments``,
``attachments_api``), where the events that change these live.

The state sits on the aggregate in three dicts created on first use (aggregates stored
before exports existed have none):

- ``export_registry``: export id → ``{"attachment_id", "identity"}``, one per export the
  backend made (``ExportCreated``) and has not removed (``ExportsRemoved``);
- ``export_requests``: request version → the ``ExportRequested`` fields, until
  ``ExportCreated`` or ``ExportFailed`` names that version;
- ``unexport_requests``: request version → the ``UnexportRequested`` fields, until
  ``ExportsRemoved`` or ``UnexportFailed`` names it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

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


def export_requests(volume: Any) -> dict[int, dict[str, Any]]:
    return _state(volume, "export_requests")


def unexport_requests(volume: Any) -> dict[int, dict[str, Any]]:
    return _state(volume, "unexport_requests")


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
