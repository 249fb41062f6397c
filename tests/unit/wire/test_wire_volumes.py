"""Volume create/update bodies: spec §2.3, §2.4."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cinderblock.wire.faults import BadRequest
from cinderblock.wire.microversion import MAX_VERSION, APIVersion
from cinderblock.wire.volumes import VolumeCreateRequest, VolumeUpdateRequest
from tests.helpers.apiref import SAMPLES, require_samples

V30 = APIVersion(3, 0)
V352 = APIVersion(3, 52)
V353 = APIVersion(3, 53)
UUID = "f7223234-1afc-4d19-bfa3-d19deb6235ef"


def _create(volume: dict[str, Any], version: APIVersion = V30) -> VolumeCreateRequest:
    return VolumeCreateRequest.parse({"volume": volume}, version)


def _create_error(body: object, version: APIVersion = V30) -> str:
    with pytest.raises(BadRequest) as info:
        VolumeCreateRequest.parse(body, version)
    return info.value.message


@pytest.mark.parametrize("version", [V30, V353, MAX_VERSION])
def test_create_sample(version: APIVersion) -> None:
    require_samples()
    body = json.loads((SAMPLES / "volumes" / "volume-create-request.json").read_text())
    request = VolumeCreateRequest.parse(body, version)
    assert request.size == 10
    assert request.metadata == {}
    assert request.name is None
    assert request.scheduler_hints == body["OS-SCH-HNT:scheduler_hints"]


def test_create_normalizes() -> None:
    request = _create(
        {
            "size": "5",
            "display_name": "  legacy  ",
            "display_description": " d ",
            "volume_type": "lvm",
            "metadata": {"k": "v"},
            "availability_zone": "nova",
            "image_id": "img",
            "multiattach": "false",
        }
    )
    assert request.size == 5
    assert request.name == "legacy"
    assert request.description == "d"
    assert request.volume_type == "lvm"
    assert request.metadata == {"k": "v"}
    assert request.availability_zone == "nova"
    assert request.image_ref == "img"
    assert request.scheduler_hints is None


def test_create_name_wins_over_display_name_even_when_null() -> None:
    assert _create({"size": 1, "name": "new", "display_name": "old"}).name == "new"
    assert _create({"size": 1, "name": None, "display_name": "old"}).name is None
    assert _create({"size": 1, "description": "", "display_description": "x"}).description == ""


def test_create_image_id_wins_over_image_ref() -> None:
    """Cinder's controller: ``if 'image_id' in volume: volume['imageRef'] = ...pop('image_id')``."""
    assert _create({"size": 1, "imageRef": "a", "image_id": "b"}).image_ref == "b"
    assert _create({"size": 1, "imageRef": "a"}).image_ref == "a"


def test_create_sources_without_size() -> None:
    assert _create({"snapshot_id": UUID}).snapshot_id == UUID
    assert _create({"source_volid": UUID}).source_volid == UUID
    assert _create({"backup_id": UUID}, APIVersion(3, 47)).backup_id == UUID
    assert _create({"size": None, "source_volid": UUID}).size is None


@pytest.mark.parametrize(
    "volume",
    [{}, {"size": None}, {"imageRef": "img"}, {"backup_id": UUID}],
)
def test_create_missing_size_without_source(volume: dict[str, Any]) -> None:
    # backup_id is only read from 3.47; at 3.0 it is an ignored unknown key.
    assert _create_error({"volume": volume}) == (
        "Invalid input received: Volume size 'None' must be an integer and greater than 0"
    )


@pytest.mark.parametrize(
    ("volume", "field"),
    [
        ({"size": 0}, "size"),
        ({"size": "abc"}, "size"),
        ({"size": 1.5}, "size"),
        ({"size": True}, "size"),
        ({"size": 1, "name": "x" * 256}, "name"),
        ({"size": 1, "display_name": 5}, "display_name"),
        ({"size": 1, "description": "x" * 256}, "description"),
        ({"size": 1, "volume_type": "t" * 256}, "volume_type"),
        ({"size": 1, "volume_type": 5}, "volume_type"),
        ({"size": 1, "metadata": []}, "metadata"),
        ({"size": 1, "metadata": {"bad$key": "v"}}, "metadata"),
        ({"size": 1, "metadata": {"k": "v" * 256}}, "k"),
        ({"size": 1, "snapshot_id": "nope"}, "snapshot_id"),
        ({"size": 1, "source_volid": 5}, "source_volid"),
        ({"size": 1, "consistencygroup_id": "x"}, "consistencygroup_id"),
        ({"size": 1, "availability_zone": ""}, "availability_zone"),
        ({"size": 1, "availability_zone": "z" * 256}, "availability_zone"),
        ({"size": 1, "imageRef": 5}, "imageRef"),
        ({"size": 1, "image_id": "i" * 256}, "image_id"),
        ({"size": 1, "multiattach": "tt"}, "multiattach"),
    ],
)
def test_create_field_errors(volume: dict[str, Any], field: str) -> None:
    assert _create_error({"volume": volume}).startswith(
        f"Invalid input for field/attribute {field}."
    )


def test_create_name_length_counts_after_trimming() -> None:
    assert _create({"size": 1, "name": " " + "x" * 255 + " "}).name == "x" * 255


@pytest.mark.parametrize("value", [True, "true", "yes", "1"])
def test_create_multiattach_true_is_rejected(value: object) -> None:
    assert "multiattach parameter has been removed" in _create_error(
        {"volume": {"size": 1, "multiattach": value}}
    )


@pytest.mark.parametrize("value", [False, "false", None])
def test_create_multiattach_false_is_fine(value: object) -> None:
    assert _create({"size": 1, "multiattach": value}).size == 1


def test_create_top_level_errors() -> None:
    assert _create_error(None) == "None is not of type 'object'"
    assert _create_error([]) == "[] is not of type 'object'"
    assert _create_error({}) == "'volume' is a required property"
    assert _create_error({"volume": None}) == (
        "Invalid input for field/attribute volume. Value: None. None is not of type 'object'"
    )
    assert _create_error({"volume": {"size": 1}, "foo": 1}) == (
        "Additional properties are not allowed ('foo' was unexpected)"
    )
    assert _create_error({"volume": {"size": 1}, "OS-SCH-HNT:scheduler_hints": []}).startswith(
        "Invalid input for field/attribute OS-SCH-HNT:scheduler_hints."
    )


def test_create_null_hints_allowed() -> None:
    body = {"volume": {"size": 1}, "OS-SCH-HNT:scheduler_hints": None}
    assert VolumeCreateRequest.parse(body, V30).scheduler_hints is None


def test_create_unknown_keys_ignored_below_353() -> None:
    request = _create({"size": 1, "foo": "bar", "bootable": True}, V352)
    assert request.size == 1


def test_create_unknown_keys_rejected_from_353() -> None:
    message = _create_error({"volume": {"size": 1, "foo": "bar"}}, V353)
    assert message.startswith("Invalid input for field/attribute volume.")
    assert message.endswith("Additional properties are not allowed ('foo' was unexpected)")


def test_create_group_id_from_313() -> None:
    assert _create({"size": 1, "group_id": "g1"}, APIVersion(3, 12)).group_id is None
    assert _create({"size": 1, "group_id": "g1"}, APIVersion(3, 13)).group_id == "g1"
    assert _create({"size": 1, "group_id": 5}, APIVersion(3, 12)).group_id is None
    assert _create_error({"volume": {"size": 1, "group_id": 5}}, APIVersion(3, 13)).startswith(
        "Invalid input for field/attribute group_id."
    )


def test_create_backup_id_from_347() -> None:
    assert _create({"size": 1, "backup_id": "junk"}, APIVersion(3, 46)).backup_id is None
    assert _create({"size": 1, "backup_id": UUID}, APIVersion(3, 47)).backup_id == UUID
    assert _create_error({"volume": {"size": 1, "backup_id": "junk"}}, APIVersion(3, 47)).endswith(
        "'junk' is not a 'uuid'"
    )


# --- update -------------------------------------------------------------------------


def test_update_sample() -> None:
    require_samples()
    body = json.loads((SAMPLES / "volumes" / "volume-update-request.json").read_text())
    request = VolumeUpdateRequest.parse(body, MAX_VERSION)
    assert request.changes() == {
        "name": "vol-003",
        "description": "This is yet, another volume.",
        "metadata": {"name": "metadata0"},
    }


def test_update_only_sent_keys_change() -> None:
    assert VolumeUpdateRequest.parse({"volume": {"name": None}}, V30).changes() == {"name": None}
    assert VolumeUpdateRequest.parse({"volume": {"display_description": " d "}}, V30).changes() == {
        "description": "d"
    }
    assert VolumeUpdateRequest.parse(
        {"volume": {"name": "n", "display_name": "old"}}, V30
    ).changes() == {"name": "n"}
    assert VolumeUpdateRequest.parse({"volume": {"metadata": {}}}, V30).changes() == {
        "metadata": {}
    }


def test_update_empty_allowed_below_353_only() -> None:
    assert VolumeUpdateRequest.parse({"volume": {}}, V352).changes() == {}
    with pytest.raises(BadRequest) as info:
        VolumeUpdateRequest.parse({"volume": {}}, V353)
    assert info.value.message.startswith("Invalid input for field/attribute volume. Value: {}.")


@pytest.mark.parametrize(
    ("body", "start"),
    [
        ({"volume": {"size": 2}}, "Invalid input for field/attribute volume."),
        ({"volume": {"metadata": None}}, "Invalid input for field/attribute metadata."),
        ({"volume": {"metadata": {"k": 1}}}, "Invalid input for field/attribute k."),
        ({"volume": {"name": "x" * 256}}, "Invalid input for field/attribute name."),
        ({"volume": {"name": "n"}, "extra": 1}, "Additional properties are not allowed"),
        ({"volume": {"name": "n"}, "OS-SCH-HNT:scheduler_hints": {}}, "Additional properties"),
        ({}, "'volume' is a required property"),
        ({"volume": "x"}, "Invalid input for field/attribute volume."),
        (None, "None is not of type 'object'"),
    ],
)
@pytest.mark.parametrize("version", [V30, V353])
def test_update_errors(body: object, start: str, version: APIVersion) -> None:
    with pytest.raises(BadRequest) as info:
        VolumeUpdateRequest.parse(body, version)
    assert info.value.message.startswith(start)
