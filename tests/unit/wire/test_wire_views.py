"""Volume views and the version document: spec §1.2, §2.2."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from cinderblock.wire.microversion import MAX_VERSION, APIVersion
from cinderblock.wire.views import (
    ViewContext,
    format_time,
    service_uuid,
    versions_document,
    volume_detail,
    volume_links,
    volume_summary,
)
from tests.helpers.apiref import SAMPLES, require_samples

VOLUME_ID = "f7223234-1afc-4d19-bfa3-d19deb6235ef"
PROJECT = "89afd400-b646-4bbc-b12b-c0a4d63e5bd3"
BASE = "http://127.0.0.1:45839"
ADMIN_ONLY = {
    "migration_status",
    "provider_id",
    "cluster_name",
    "os-vol-host-attr:host",
    "os-vol-mig-status-attr:migstat",
    "os-vol-mig-status-attr:name_id",
}


def _row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": VOLUME_ID,
        "project_id": PROJECT,
        "user_id": "c853ca26-e8ea-4797-8a52-ee124a013d0e",
        "name": None,
        "description": None,
        "size": 10,
        "status": "creating",
        "attach_status": "detached",
        "migration_status": None,
        "host": None,
        "availability_zone": "nova",
        "volume_type_id": "5fed9d7c-401d-46e2-8e80-f30c70cb7e1d",
        "volume_type_name": "__DEFAULT__",
        "bootable": False,
        "multiattach": False,
        "encryption_key_id": None,
        "metadata": {},
        "admin_metadata": {},
        "image_metadata": {},
        "snapshot_id": None,
        "source_volid": None,
        "consistencygroup_id": None,
        "group_id": None,
        "provider_id": None,
        "replication_status": None,
        "use_quota": True,
        "cluster_name": None,
        "created_at": datetime(2018, 11, 29, 6, 50, 7, 770785),
        "updated_at": None,
        "attachments": [],
    }
    row.update(overrides)
    return row


def _ctx(
    version: APIVersion = MAX_VERSION,
    *,
    admin: bool = True,
    roles: frozenset[str] = frozenset({"admin"}),
    project: str | None = PROJECT,
) -> ViewContext:
    return ViewContext(
        version=version, is_admin=admin, roles=roles, base_url=BASE, project_in_url=project
    )


def _sample(*parts: str) -> dict[str, Any]:
    require_samples()
    data: dict[str, Any] = json.loads((SAMPLES.joinpath(*parts)).read_text())
    return data


def _sample_version(folder: str) -> APIVersion:
    return APIVersion.parse(folder[1:])


VERSIONED = ["v3.13", "v3.21", "v3.48", "v3.61", "v3.63", "v3.65", "v3.69"]


@pytest.mark.parametrize("folder", VERSIONED)
def test_show_key_set_matches_sample(folder: str) -> None:
    sample = _sample("volumes", folder, "volume-show-response.json")["volume"]
    view = volume_detail(_row(), _ctx(_sample_version(folder)), extended=True)
    assert set(view) == set(sample)


@pytest.mark.parametrize("folder", VERSIONED)
def test_create_and_update_key_sets_match_samples(folder: str) -> None:
    version = _sample_version(folder)
    create = _sample("volumes", folder, "volume-create-response.json")["volume"]
    update = _sample("volumes", folder, "volume-update-response.json")["volume"]
    ctx = _ctx(version)
    assert set(volume_detail(_row(), ctx, extended=False, merge_admin_metadata=False)) == set(
        create
    )
    assert set(volume_detail(_row(), ctx, extended=False)) == set(update)


def test_base_samples_at_30() -> None:
    show = _sample("volumes", "volume-show-response.json")["volume"]
    create = _sample("volumes", "volume-create-response.json")["volume"]
    ctx = _ctx(APIVersion(3, 0))
    assert set(volume_detail(_row(), ctx, extended=True)) == set(show)
    assert set(volume_detail(_row(), ctx, extended=False)) == set(create)


def test_v369_show_values_match_sample() -> None:
    sample = _sample("volumes", "v3.69", "volume-show-response.json")["volume"]
    view = volume_detail(_row(), _ctx(APIVersion(3, 69)), extended=True)
    assert view == sample


def test_list_detail_sample_keys() -> None:
    sample = _sample("volumes", "v3.69", "volumes-list-detailed-response.json")["volumes"][0]
    assert set(volume_detail(_row(), _ctx(APIVersion(3, 69)), extended=True)) == set(sample)


def test_non_admin_reader_view() -> None:
    ctx = _ctx(admin=False, roles=frozenset({"member"}))
    view = volume_detail(_row(), ctx, extended=True)
    assert not ADMIN_ONLY & set(view)
    assert view["os-vol-tenant-attr:tenant_id"] == PROJECT
    assert {
        "group_id",
        "shared_targets",
        "service_uuid",
        "volume_type_id",
        "consumes_quota",
    } <= set(view)


def test_caller_without_reader_role_gets_no_tenant_attr() -> None:
    view = volume_detail(_row(), _ctx(admin=False, roles=frozenset()), extended=True)
    assert "os-vol-tenant-attr:tenant_id" not in view


@pytest.mark.parametrize(
    ("version", "present", "absent"),
    [
        (APIVersion(3, 0), set(), {"group_id", "provider_id", "shared_targets"}),
        (APIVersion(3, 12), set(), {"group_id"}),
        (APIVersion(3, 13), {"group_id"}, {"provider_id"}),
        (APIVersion(3, 21), {"provider_id"}, {"shared_targets", "service_uuid"}),
        (APIVersion(3, 48), {"shared_targets", "service_uuid"}, {"cluster_name"}),
        (APIVersion(3, 61), {"cluster_name"}, {"volume_type_id"}),
        (APIVersion(3, 63), {"volume_type_id"}, {"consumes_quota"}),
        (APIVersion(3, 65), {"consumes_quota"}, set()),
    ],
)
def test_keys_per_microversion(version: APIVersion, present: set[str], absent: set[str]) -> None:
    view = volume_detail(_row(), _ctx(version), extended=False)
    assert present <= set(view)
    assert not absent & set(view)


def test_unplaced_volume_shares_targets_null_at_369_true_below() -> None:
    assert volume_detail(_row(), _ctx(APIVersion(3, 68)), extended=False)["shared_targets"] is True
    assert volume_detail(_row(), _ctx(APIVersion(3, 69)), extended=False)["shared_targets"] is None
    assert volume_detail(_row(), _ctx(APIVersion(3, 69)), extended=False)["service_uuid"] is None


@pytest.mark.parametrize("version", [APIVersion(3, 48), APIVersion(3, 69), MAX_VERSION])
def test_placed_volume_shows_its_backend_and_service(version: APIVersion) -> None:
    view = volume_detail(_row(host="node1@file#pool0"), _ctx(version), extended=False)
    assert view["shared_targets"] is False  # the file backend shares no targets
    assert view["service_uuid"] == service_uuid("node1@file#pool0")
    assert uuid.UUID(view["service_uuid"]).version == 5


def test_service_uuid_is_one_per_backend() -> None:
    assert service_uuid("node1@file#pool0") == service_uuid("node1@file#pool1")
    assert service_uuid("node1@file#pool0") != service_uuid("node1@fast#pool0")
    assert service_uuid("node1@file#pool0") != service_uuid("node2@file#pool0")
    assert service_uuid(None) is None


def test_encryption_key_id() -> None:
    key = "a0cf03a5-d921-4877-bb5c-86d26cf818e1"
    row = _row(encryption_key_id=key)
    assert volume_detail(row, _ctx(APIVersion(3, 64)), extended=False)["encryption_key_id"] == key
    assert "encryption_key_id" not in volume_detail(row, _ctx(APIVersion(3, 63)), extended=False)
    assert volume_detail(row, _ctx(APIVersion(3, 0)), extended=False)["encrypted"] is True
    legacy = _row(encryption_key_id="00000000-0000-0000-0000-000000000000")
    view = volume_detail(legacy, _ctx(APIVersion(3, 64)), extended=False)
    assert "encryption_key_id" not in view
    assert view["encrypted"] is True
    assert volume_detail(_row(), _ctx(), extended=False)["encrypted"] is False


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("managing", "creating"),
        ("error_managing", "error"),
        ("error_managing_deleting", "deleting"),
        ("available", "available"),
        ("reverting", "reverting"),
        ("error_extending", "error_extending"),
    ],
)
def test_status_display(stored: str, shown: str) -> None:
    assert volume_detail(_row(status=stored), _ctx(), extended=False)["status"] == shown


def test_bootable_is_a_string() -> None:
    assert volume_detail(_row(bootable=True), _ctx(), extended=False)["bootable"] == "true"
    assert volume_detail(_row(bootable=False), _ctx(), extended=False)["bootable"] == "false"


def test_volume_type_name_or_id() -> None:
    missing = _row(volume_type_name=None)
    assert (
        volume_detail(missing, _ctx(APIVersion(3, 62)), extended=False)["volume_type"]
        == (missing["volume_type_id"])
    )
    assert volume_detail(missing, _ctx(APIVersion(3, 63)), extended=False)["volume_type"] is None
    assert volume_detail(_row(), _ctx(APIVersion(3, 0)), extended=False)["volume_type"] == (
        "__DEFAULT__"
    )


def test_metadata_merges_visible_admin_keys() -> None:
    row = _row(
        metadata={"user": "1", "readonly": "user-value"},
        admin_metadata={"readonly": "True", "attached_mode": "ro", "secret": "x"},
    )
    merged = {"user": "1", "readonly": "True", "attached_mode": "ro"}
    assert volume_detail(row, _ctx(), extended=True)["metadata"] == merged
    assert volume_detail(row, _ctx(), extended=False)["metadata"] == merged
    create = volume_detail(row, _ctx(), extended=False, merge_admin_metadata=False)
    assert create["metadata"] == {"user": "1", "readonly": "user-value"}


def _attachment(status: str, attachment_id: str = "att-1") -> dict[str, Any]:
    return {
        "attachment_id": attachment_id,
        "instance_uuid": "server-1",
        "attached_host": "compute-1",
        "mountpoint": "/dev/vdb",
        "attach_status": status,
        "attach_time": datetime(2024, 1, 2, 3, 4, 5),
    }


def test_attachments_only_attached_ones() -> None:
    row = _row(
        attachments=[_attachment("attached"), _attachment("attaching", "att-2")],
        status="in-use",
    )
    (item,) = volume_detail(row, _ctx(), extended=True)["attachments"]
    assert item == {
        "id": VOLUME_ID,
        "attachment_id": "att-1",
        "volume_id": VOLUME_ID,
        "server_id": "server-1",
        "host_name": "compute-1",
        "device": "/dev/vdb",
        "attached_at": "2024-01-02T03:04:05.000000",
    }


@pytest.mark.parametrize(
    ("admin", "roles", "host"),
    [
        (True, frozenset({"admin"}), "compute-1"),
        (False, frozenset({"member", "service"}), "compute-1"),
        (False, frozenset({"member"}), None),
    ],
)
def test_attachment_host_name_visibility(
    admin: bool, roles: frozenset[str], host: str | None
) -> None:
    row = _row(attachments=[_attachment("attached")])
    view = volume_detail(row, _ctx(admin=admin, roles=roles), extended=False)
    assert view["attachments"][0]["host_name"] == host


def test_image_metadata_only_when_present() -> None:
    row = _row(image_metadata={"image_id": "img-1", "min_disk": "1"})
    view = volume_detail(row, _ctx(admin=False, roles=frozenset({"reader"})), extended=True)
    assert view["volume_image_metadata"] == {"image_id": "img-1", "min_disk": "1"}
    assert "volume_image_metadata" not in volume_detail(row, _ctx(), extended=False)
    assert "volume_image_metadata" not in volume_detail(_row(), _ctx(), extended=True)


def test_extended_admin_values() -> None:
    row = _row(host="node@lvm#pool", migration_status="migrating")
    view = volume_detail(row, _ctx(), extended=True)
    assert view["os-vol-host-attr:host"] == "node@lvm#pool"
    assert view["os-vol-mig-status-attr:migstat"] == "migrating"
    assert view["os-vol-mig-status-attr:name_id"] is None
    assert view["migration_status"] == "migrating"


def test_links_with_and_without_project() -> None:
    assert volume_links(VOLUME_ID, _ctx()) == [
        {"href": f"{BASE}/v3/{PROJECT}/volumes/{VOLUME_ID}", "rel": "self"},
        {"href": f"{BASE}/{PROJECT}/volumes/{VOLUME_ID}", "rel": "bookmark"},
    ]
    assert volume_links(VOLUME_ID, _ctx(project=None)) == [
        {"href": f"{BASE}/v3/volumes/{VOLUME_ID}", "rel": "self"},
        {"href": f"{BASE}/volumes/{VOLUME_ID}", "rel": "bookmark"},
    ]


def test_summary() -> None:
    sample = _sample("volumes", "volumes-list-response.json")["volumes"][0]
    summary = volume_summary(_row(name="vol-1"), _ctx())
    assert set(summary) == set(sample)
    assert summary["name"] == "vol-1"


@pytest.mark.parametrize(
    ("dt", "text"),
    [
        (datetime(2018, 11, 29, 6, 50, 7, 770785), "2018-11-29T06:50:07.770785"),
        (datetime(2018, 11, 29, 6, 50, 7), "2018-11-29T06:50:07.000000"),
        (datetime(2018, 11, 29, 6, 50, 7, 5, tzinfo=UTC), "2018-11-29T06:50:07.000005"),
        (
            datetime(2018, 11, 29, 8, 50, 7, tzinfo=timezone(timedelta(hours=2))),
            "2018-11-29T06:50:07.000000",
        ),
        (None, None),
    ],
)
def test_format_time(dt: datetime | None, text: str | None) -> None:
    assert format_time(dt) == text


@pytest.mark.parametrize(
    "base",
    [
        "http://127.0.0.1:44895",
        "http://127.0.0.1:44895/",
        "http://127.0.0.1:44895/v3",
        "http://127.0.0.1:44895/v3/",
        "http://127.0.0.1:44895/v2",
    ],
)
def test_versions_document(base: str) -> None:
    sample = _sample("versions", "version-show-response.json")
    document = versions_document(base)
    assert document == sample  # the sample's "updated" is the current code value


def test_versions_document_keys() -> None:
    (entry,) = versions_document("https://cinder.example:8776")["versions"]
    assert entry["version"] == "3.71"
    assert entry["min_version"] == "3.0"
    assert entry["updated"] == "2023-08-31T00:00:00Z"
    assert entry["links"][1] == {"rel": "self", "href": "https://cinder.example:8776/v3/"}
