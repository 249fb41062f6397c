"""os-set_image_metadata's ``metadata`` as Cinder's ``image_metadata`` schema checks it: keys
``^[a-zA-Z0-9-_:. /]{1,255}$`` (searched, so a final newline passes as in jsonschema), none
reserved; values strings of at most 65535 UTF-8 bytes (``mysql_text``)."""

from __future__ import annotations

import pytest

from cinderblock.wire.bookkeeping import SetImageMetadata
from cinderblock.wire.faults import BadRequest
from cinderblock.wire.microversion import APIVersion

pytestmark = pytest.mark.unit

V3 = APIVersion(3, 0)


def parse(metadata: object) -> dict[str, str]:
    return dict(SetImageMetadata.parse({"metadata": metadata}, V3).metadata)


@pytest.mark.parametrize(
    "key", ["image_id", "checksum", "min_ram", "a/b c:d.e-f_G9", "k" * 255, "trailing\n"]
)
def test_keys_cinder_accepts(key: str) -> None:
    assert parse({key: "v"}) == {key: "v"}


@pytest.mark.parametrize("key", ["", "k" * 256, "bad*key", "ünï", "tab\there", "a\nb"])
def test_keys_cinder_refuses(key: str) -> None:
    with pytest.raises(BadRequest, match="does not match any of the regexes"):
        parse({key: "v"})


def test_values_are_measured_in_utf8_bytes() -> None:
    assert parse({"k": "é" * 32767}) == {"k": "é" * 32767}  # 65534 bytes
    with pytest.raises(BadRequest, match=r"is not a 'mysql_text'$"):
        parse({"k": "é" * 32768})  # 65536 bytes, 32768 characters


def test_a_value_error_comes_before_a_key_error() -> None:
    with pytest.raises(BadRequest) as raised:
        parse({"bad*key": "v", "k": 5})
    assert str(raised.value.message) == (
        "Invalid input for field/attribute k. Value: 5. 5 is not of type 'string'"
    )
