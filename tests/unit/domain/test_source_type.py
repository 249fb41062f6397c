"""Cinder's ``_retype_is_possible`` for a create from a snapshot or a volume with another
type than the source's, and its two refusal texts."""

from __future__ import annotations

from cinderblock.domain.volume_source import incompatible_type, type_is_compatible

LUKS = {
    "provider": "luks",
    "cipher": "aes-xts-plain64",
    "key_size": 256,
    "control_location": "front-end",
}


def test_never_across_encryptions_whatever_the_backends() -> None:
    assert not type_is_compatible(LUKS, "file-a", None, "file-a", volume_services=1)
    assert not type_is_compatible(None, None, LUKS, None, volume_services=1)
    assert type_is_compatible(LUKS, None, {**LUKS, "encryption_id": "x"}, None, volume_services=1)


def test_one_volume_service_takes_any_type_else_the_same_backend_name() -> None:
    assert type_is_compatible(None, None, None, "file-b", volume_services=1)
    assert not type_is_compatible(None, None, None, None, volume_services=2)
    assert not type_is_compatible(None, "file-a", None, None, volume_services=2)
    assert not type_is_compatible(None, "file-a", None, "file-b", volume_services=2)
    assert type_is_compatible(None, "file-a", None, "file-a", volume_services=2)
    assert type_is_compatible(None, "file-a", None, "file-a", volume_services=0)


def test_the_refusals_name_the_type_by_id_with_cinders_advice() -> None:
    assert str(incompatible_type("t-1", snapshot=True)) == (
        "Invalid volume_type provided: t-1 (requested type is not compatible; recommend "
        "omitting the type argument)."
    )
    assert str(incompatible_type("t-1", snapshot=False)) == (
        "Invalid volume_type provided: t-1 (requested type is not compatible; either match "
        "source volume, or omit type argument)."
    )
