"""A volume's encryption metadata as Cinder's ``volume_encryption_metadata_get`` builds it."""

from __future__ import annotations

from cinderblock.wire.type_encryption import volume_encryption_view

ENCRYPTION = {
    "encryption_id": "0c5e5a1b-8b4d-4a43-a0f7-6e0a4d5f6f30",
    "provider": "luks",
    "cipher": "aes-xts-plain64",
    "key_size": 256,
    "control_location": "front-end",
}


def test_unencrypted_volume_gets_only_its_null_key_id() -> None:
    assert volume_encryption_view(None, {"id": "t", "encryption": None}) == {
        "encryption_key_id": None
    }
    assert volume_encryption_view(None, None) == {"encryption_key_id": None}


def test_encrypted_volume_gets_the_types_four_fields_and_its_key() -> None:
    assert volume_encryption_view("k-1", {"id": "t", "encryption": ENCRYPTION}) == {
        "encryption_key_id": "k-1",
        "provider": "luks",
        "cipher": "aes-xts-plain64",
        "key_size": 256,
        "control_location": "front-end",
    }
