"""JSON views of volumes and of the version document (spec §1.2, §2.2).

Input rows are plain mappings from the read model (keys listed in README.md);
microversion and caller decide which conditional keys appear.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cinderblock.wire.microversion import MAX_VERSION, MIN_VERSION, APIVersion

VERSIONS_UPDATED = "2023-08-31T00:00:00Z"
LEGACY_FIXED_KEY_ID = "00000000-0000-0000-0000-000000000000"
VISIBLE_ADMIN_METADATA = ("readonly", "attached_mode")
STATUS_DISPLAY = {
    "managing": "creating",
    "error_managing": "error",
    "error_managing_deleting": "deleting",
}
READER_ROLES = frozenset({"reader", "member", "admin"})  # Keystone: admin ⇒ member ⇒ reader

_GROUP_ID = APIVersion(3, 13)
_PROVIDER_ID = APIVersion(3, 21)
_SHARED_TARGETS = APIVersion(3, 48)
_CLUSTER_NAME = APIVersion(3, 61)
_VOLUME_TYPE_ID = APIVersion(3, 63)
_ENCRYPTION_KEY_ID = APIVersion(3, 64)
_CONSUMES_QUOTA = APIVersion(3, 65)
_SHARED_TARGETS_TRISTATE = APIVersion(3, 69)
_TRAILING_VERSION_RE = re.compile(r"/v\d+(\.\d+)?$")

# A volume service's uuid is uuid5(SERVICE_NAMESPACE, "host@backend"): stable for as long as
# the backend keeps its name, the same in every process, nothing to store (docs/decisions.md).
SERVICE_NAMESPACE = uuid.UUID("a5ee2e1c-4052-4993-8c84-2ef450e654da")
# Cinder's manager (_driver_shares_targets): only iSCSI (True) and NVMe-oF (None) backends
# make os-brick lock around a connection; the file backend (protocol "file") answers False.
FILE_BACKEND_SHARES_TARGETS = False

Row = Mapping[str, Any]


@dataclass(frozen=True)
class ViewContext:
    """What a view needs to know about the request.

    ``base_url`` is ``scheme://host[:port]``; ``project_in_url`` is the project id
    when the request URL carried one (links then carry it too).
    """

    version: APIVersion
    is_admin: bool
    roles: frozenset[str]
    base_url: str
    project_in_url: str | None = None

    @property
    def is_reader(self) -> bool:
        """Passes Cinder's reader rule for a volume the caller can already see."""
        return self.is_admin or bool(self.roles & READER_ROLES)


def format_time(dt: datetime | None) -> str | None:
    """``2018-11-29T06:50:07.770785``: UTC, no zone suffix, microseconds always shown."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.isoformat(timespec="microseconds")


def volume_links(volume_id: str, ctx: ViewContext) -> list[dict[str, str]]:
    """``self`` (under ``/v3``) and ``bookmark`` links of a volume."""
    base = ctx.base_url.rstrip("/")
    project = f"{ctx.project_in_url}/" if ctx.project_in_url else ""
    return [
        {"href": f"{base}/v3/{project}volumes/{volume_id}", "rel": "self"},
        {"href": f"{base}/{project}volumes/{volume_id}", "rel": "bookmark"},
    ]


def volume_summary(row: Row, ctx: ViewContext) -> dict[str, Any]:
    """An entry of ``GET /volumes``."""
    return {"id": row["id"], "name": row["name"], "links": volume_links(row["id"], ctx)}


def display_status(status: str) -> str:
    """The status clients see for a stored status."""
    return STATUS_DISPLAY.get(status, status)


def service_uuid(host: str | None) -> str | None:
    """The uuid of the cinder-volume service that owns ``host@backend#pool`` (None unplaced)."""
    if not host:
        return None
    return str(uuid.uuid5(SERVICE_NAMESPACE, host.partition("#")[0]))


def _shared_targets(row: Row, version: APIVersion) -> bool | None:
    """The backend's value once the volume is placed (Cinder sets it when the create
    finishes); before that Cinder shows null at 3.69+ and ``true`` below (its samples)."""
    if row["host"]:
        return FILE_BACKEND_SHARES_TARGETS
    return None if version >= _SHARED_TARGETS_TRISTATE else True


def _volume_type(row: Row, version: APIVersion) -> str | None:
    name: str | None = row["volume_type_name"]
    if version >= _VOLUME_TYPE_ID or name is not None:
        return name
    type_id: str | None = row["volume_type_id"]  # type row missing: Cinder shows the id
    return type_id


def _metadata(row: Row, merge_admin_metadata: bool) -> dict[str, str]:
    metadata = dict(row["metadata"] or {})
    if merge_admin_metadata:
        admin = row["admin_metadata"] or {}
        metadata.update({key: admin[key] for key in VISIBLE_ADMIN_METADATA if key in admin})
    return metadata


def _attachments(row: Row, ctx: ViewContext) -> list[dict[str, Any]]:
    show_host = ctx.is_admin or "service" in ctx.roles
    return [
        {
            "id": row["id"],
            "attachment_id": item["attachment_id"],
            "volume_id": row["id"],
            "server_id": item["instance_uuid"],
            "host_name": item["attached_host"] if show_host else None,
            "device": item["mountpoint"],
            "attached_at": format_time(item["attach_time"]),
        }
        for item in row["attachments"] or ()
        if item["attach_status"] == "attached"
    ]


def _base_detail(row: Row, ctx: ViewContext, merge_admin_metadata: bool) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": display_status(row["status"]),
        "size": row["size"],
        "availability_zone": row["availability_zone"],
        "created_at": format_time(row["created_at"]),
        "updated_at": format_time(row["updated_at"]),
        "name": row["name"],
        "description": row["description"],
        "volume_type": _volume_type(row, ctx.version),
        "snapshot_id": row["snapshot_id"],
        "source_volid": row["source_volid"],
        "metadata": _metadata(row, merge_admin_metadata),
        "links": volume_links(row["id"], ctx),
        "user_id": row["user_id"],
        "bootable": "true" if row["bootable"] else "false",
        "encrypted": row["encryption_key_id"] is not None,
        "replication_status": row["replication_status"],
        "consistencygroup_id": row["consistencygroup_id"],
        "multiattach": bool(row["multiattach"]),
        "attachments": _attachments(row, ctx),
    }


def _versioned_keys(row: Row, ctx: ViewContext) -> dict[str, Any]:
    version, admin = ctx.version, ctx.is_admin
    view: dict[str, Any] = {}
    if admin:
        view["migration_status"] = row["migration_status"]
    if version >= _GROUP_ID:
        view["group_id"] = row["group_id"]
    if version >= _PROVIDER_ID and admin:
        view["provider_id"] = row["provider_id"]
    if version >= _SHARED_TARGETS:
        view["shared_targets"] = _shared_targets(row, version)
        view["service_uuid"] = service_uuid(row["host"])
    if version >= _CLUSTER_NAME and admin:
        view["cluster_name"] = row["cluster_name"]
    if version >= _VOLUME_TYPE_ID:
        view["volume_type_id"] = row["volume_type_id"]
    key_id = row["encryption_key_id"]
    if version >= _ENCRYPTION_KEY_ID and key_id and key_id != LEGACY_FIXED_KEY_ID:
        view["encryption_key_id"] = key_id
    if version >= _CONSUMES_QUOTA:
        view["consumes_quota"] = bool(row["use_quota"])
    return view


def _extended_keys(row: Row, ctx: ViewContext) -> dict[str, Any]:
    view: dict[str, Any] = {}
    if ctx.is_admin:
        view["os-vol-host-attr:host"] = row["host"]
        view["os-vol-mig-status-attr:migstat"] = row["migration_status"]
        view["os-vol-mig-status-attr:name_id"] = row.get("name_id")
    if ctx.is_reader:
        view["os-vol-tenant-attr:tenant_id"] = row["project_id"]
        if row["image_metadata"]:
            view["volume_image_metadata"] = dict(row["image_metadata"])
    return view


def volume_detail(
    row: Row, ctx: ViewContext, *, extended: bool, merge_admin_metadata: bool = True
) -> dict[str, Any]:
    """The detail view of one volume (the value under ``"volume"``).

    Args:
        row: the read-model row.
        ctx: the request's view context.
        extended: add the ``os-vol-*`` attributes and ``volume_image_metadata``
            (show and list-detail; not create/update responses).
        merge_admin_metadata: merge admin metadata ``readonly``/``attached_mode``
            into ``metadata`` (everywhere except the create response).
    """
    view = _base_detail(row, ctx, merge_admin_metadata)
    view.update(_versioned_keys(row, ctx))
    if extended:
        view.update(_extended_keys(row, ctx))
    return view


def versions_document(base_url: str) -> dict[str, Any]:
    """The body of ``GET /`` (300) and ``GET /v3/`` (200).

    ``base_url`` is the request's base URL; a trailing ``/vN`` is dropped before
    ``/v3/`` is appended for the self link.
    """
    root = _TRAILING_VERSION_RE.sub("", base_url.rstrip("/"))
    return {
        "versions": [
            {
                "id": "v3.0",
                "status": "CURRENT",
                "version": str(MAX_VERSION),
                "min_version": str(MIN_VERSION),
                "updated": VERSIONS_UPDATED,
                "media-types": [
                    {
                        "base": "application/json",
                        "type": "application/vnd.openstack.volume+json;version=3",
                    }
                ],
                "links": [
                    {
                        "rel": "describedby",
                        "type": "text/html",
                        "href": "https://docs.openstack.org/",
                    },
                    {"rel": "self", "href": f"{root}/v3/"},
                ],
            }
        ]
    }
