"""Encryption in the domain: a type's encryption (create, update, delete, replay), an
encrypted volume (key id at create, multiattach refused, unmanage refused) and a retype that
re-encrypts (recorded with migration_status) or fails (migration_status error)."""

from __future__ import annotations

from uuid import UUID

import pytest

from cinderblock.domain.errors import InvalidInputError, InvalidVolumeError
from cinderblock.domain.status import Status
from cinderblock.domain.type_encryption import (
    EncryptionExistsError,
    EncryptionNotFoundError,
    same_encryption,
)
from cinderblock.domain.volume import Volume
from cinderblock.domain.volume_encryption import retype_key_id
from cinderblock.domain.volume_type import VolumeType
from tests.unit.domain.given import VOLUME_ID, Story, recorded, replay, story, volume_fields

TYPE_ID = UUID("0b5c7c3e-8d53-4d8a-9a67-2f8f1f8c0a11")
LUKS = {
    "provider": "luks",
    "cipher": "aes-xts-plain64",
    "key_size": 256,
    "control_location": "front-end",
}


def a_type() -> VolumeType:
    vtype = VolumeType.define(
        TYPE_ID, name="secret", description=None, is_public=True, extra_specs={}
    )
    return vtype


def test_a_type_gets_changes_and_loses_its_encryption() -> None:
    vtype = a_type()
    assert (vtype.encryption, vtype.encrypted) == (None, False)
    vtype.create_encryption("enc-1", LUKS)
    vtype.update_encryption({"key_size": 512, "colour": "blue"})  # unknown keys ignored
    events = vtype.collect_events()
    assert [(t.__qualname__, f) for t, f in recorded(events)[1:]] == [
        ("VolumeType.EncryptionCreated", {"encryption_id": "enc-1", **LUKS}),
        ("VolumeType.EncryptionUpdated", {"changes": {"key_size": 512}}),
    ]
    rebuilt = replay(events)
    assert rebuilt.encryption == {"encryption_id": "enc-1", **LUKS, "key_size": 512}
    rebuilt.delete_encryption()
    assert rebuilt.encryption is None


def test_encryption_rules_of_a_type() -> None:
    vtype = a_type()
    with pytest.raises(EncryptionNotFoundError, match="does not exist"):
        vtype.update_encryption({"key_size": 1})
    with pytest.raises(EncryptionNotFoundError):
        vtype.delete_encryption()
    vtype.create_encryption("enc-1", {"provider": "luks", "control_location": "back-end"})
    assert vtype.encryption["cipher"] is None
    with pytest.raises(EncryptionExistsError, match=f"type {TYPE_ID} already exists"):
        vtype.create_encryption("enc-2", LUKS)
    before = len(vtype.collect_events())
    vtype.update_encryption({"unknown": 1})  # nothing known to change: no event
    assert vtype.collect_events() == []
    assert before == 2  # Created, EncryptionCreated


def test_same_encryption_ignores_ids() -> None:
    assert same_encryption(None, None)
    assert not same_encryption(None, LUKS)
    assert same_encryption({**LUKS, "encryption_id": "a"}, {**LUKS, "encryption_id": "b"})
    assert not same_encryption(LUKS, {**LUKS, "cipher": "aes-cbc-essiv:sha256"})


def test_an_encrypted_volume_keeps_its_key_and_replays() -> None:
    volume = Volume.create(VOLUME_ID, **volume_fields())
    volume.set_encryption("key-1", {"encryption_id": "enc-1", **LUKS})
    events = volume.collect_events()
    assert recorded(events)[1][1] == {
        "key_id": "key-1",
        "encryption": {"encryption_id": "enc-1", **LUKS},
    }
    rebuilt = replay(events)
    assert (rebuilt.encrypted, rebuilt.encryption_key_id) == (True, "key-1")
    plain = Volume.create(VOLUME_ID, **volume_fields())
    assert (plain.encrypted, plain.encryption_key_id, plain.encryption) == (False, None, None)


def test_multiattach_volumes_cannot_be_encrypted() -> None:
    volume = Volume.create(VOLUME_ID, **volume_fields(multiattach=True))
    with pytest.raises(InvalidVolumeError, match="Multiattach cannot be used"):
        volume.set_encryption("key-1", LUKS)


def test_an_encrypted_volume_cannot_be_unmanaged() -> None:
    s = story()
    s.volume.set_encryption("key-1", LUKS)
    s.new_events()
    with pytest.raises(InvalidVolumeError, match="Unmanaging encrypted volumes"):
        s.volume.request_unmanage()
    assert s.new_events() == []


def test_retype_to_a_multiattach_encrypted_type_is_refused() -> None:
    s = story()
    with pytest.raises(InvalidInputError, match="both encryption and multi-attach"):
        s.volume.request_retype(
            "t2",
            "both",
            new_multiattach=True,
            migration_policy="on-demand",
            reservation_id="r",
            new_encrypted=True,
        )
    assert s.new_events() == []


def _retyping() -> tuple[Story, int]:
    s = story()
    s.volume.request_retype(
        "t2", "secret", new_multiattach=False, migration_policy="on-demand", reservation_id="r"
    )
    s.new_events()
    return s, s.volume.version


def test_a_reencrypting_retype_records_the_new_key_then_the_type() -> None:
    s, at = _retyping()
    key = retype_key_id(s.volume.vid, at)
    assert key == retype_key_id(s.volume.vid, at)  # a redelivered step names the same key
    s.volume.record_reencrypted(key, LUKS)
    s.volume.complete_retype(at, None)
    names = [type(e).__qualname__ for e in s.new_events()]
    assert names == ["Volume.Reencrypted", "Volume.Retyped"]
    rebuilt = s.rebuilt()
    assert (rebuilt.encryption_key_id, rebuilt.volume_type_name) == (key, "secret")
    assert (rebuilt.status, rebuilt.migration_status) == (Status.AVAILABLE, "success")


def test_a_failed_reencrypting_retype_leaves_type_and_key() -> None:
    s, at = _retyping()
    s.volume.record_reencrypt_failed("does not fit")
    s.volume.fail_retype(at, "does not fit")
    names = [type(e).__qualname__ for e in s.new_events()]
    assert names == ["Volume.ReencryptFailed", "Volume.RetypeFailed"]
    rebuilt = s.rebuilt()
    assert (rebuilt.status, rebuilt.migration_status) == (Status.AVAILABLE, "error")
    assert (rebuilt.volume_type_name, rebuilt.encryption_key_id) == ("lvm", None)
