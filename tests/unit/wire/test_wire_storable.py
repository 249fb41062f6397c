"""The one rule for text the stores cannot hold: U+0000 and lone surrogates are a 400."""

from __future__ import annotations

import json

import pytest

from cinderblock.wire.actions import split_action_body
from cinderblock.wire.faults import BadRequest
from cinderblock.wire.storable import check_document, check_request, loads, storable

BAD = ["\x00", "a\x00b", "\ud800", "x\udfff", "\udcff"]
GOOD = ["", "plain", "ünïcødé", "😀", "\u0001\u001f\u007f", "\ufffd", "\U0010ffff"]


@pytest.mark.parametrize("text", GOOD)
def test_storable_text_passes(text: str) -> None:
    assert storable(text)
    check_document({text: [text, {"k": text}]})
    check_request(f"/v3/{text}", [(text, text)], [("X-Thing", text)])


@pytest.mark.parametrize("text", BAD)
def test_nul_and_lone_surrogates_are_refused(text: str) -> None:
    assert not storable(text)


@pytest.mark.parametrize(
    ("document", "pointer"),
    [
        ({"volume": {"name": "a\x00"}}, '"volume"/"name"'),
        ({"volume": {"metadata": {"k\x00": "v"}}}, '"volume"/"metadata"/"k\\u0000"'),
        ({"a": [1, {"b": ["ok", "\ud800"]}]}, '"a"/"1"/"b"/"1"'),
        ({"os-attach": {"mountpoint": "/dev/vdb\x00"}}, '"os-attach"/"mountpoint"'),
    ],
)
def test_any_key_or_value_at_any_depth(document: object, pointer: str) -> None:
    with pytest.raises(BadRequest) as caught:
        check_document(document)
    fault = caught.value
    assert fault.status == 400
    assert fault.body()["badRequest"]["message"] == (
        f"Invalid input received: request body at {pointer} contains U+0000 or an "
        "unpaired surrogate (a character that cannot be stored)."
    )
    # The message is itself storable and ASCII: it never echoes the bad character.
    assert fault.message.isascii()


def test_a_bare_bad_string_document() -> None:
    with pytest.raises(BadRequest, match="request body contains"):
        check_document("\x00")


def test_numbers_booleans_and_null_are_not_text() -> None:
    check_document({"a": [1, 2.5, True, None], "b": {"c": False}})


def test_deep_nesting_needs_no_recursion() -> None:
    document: object = "\x00"
    for _ in range(100_000):
        document = [document]
    with pytest.raises(BadRequest):
        check_document(document)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"k": "\\u0000"}',
        b'{"k\\u0000": 1}',
        b'{"k": "\\ud800"}',
        b'{"k": "\\udc00x"}',
        b'{"k": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8: json.loads accepts it
    ],
)
def test_loads_refuses_what_json_accepts(raw: bytes) -> None:
    json.loads(raw)  # the standard decoder lets it through
    with pytest.raises(BadRequest, match=r"U\+0000 or an unpaired surrogate"):
        loads(raw)


def test_loads_keeps_a_surrogate_pair() -> None:
    assert loads(b'{"k": "\\ud83d\\ude00"}') == {"k": "😀"}


@pytest.mark.parametrize("raw", [b"{", b'{"k": "\xff"}', b"[" * 100_000])
def test_loads_malformed(raw: bytes) -> None:
    with pytest.raises(BadRequest, match=r"^Malformed request body$"):
        loads(raw)


def test_action_bodies_go_through_the_rule() -> None:
    raw = json.dumps({"os-set_image_metadata": {"metadata": {"fuzz_key\x00": "v"}}}).encode()
    with pytest.raises(BadRequest, match="metadata"):
        split_action_body(raw, "application/json")


@pytest.mark.parametrize(
    ("path", "query", "headers", "where"),
    [
        ("/v3/p/volumes/a\x00b", [], [], "the URL path"),
        ("/v3/p/volumes", [("name\x00", "x")], [], "a query parameter name"),
        ("/v3/p/volumes", [("name", "\x00")], [], 'query parameter "name"'),
        ("/v3/p/volumes", [], [("X-Auth-Token", "u\udcff:p")], 'header "X-Auth-Token"'),
    ],
)
def test_request_parts(
    path: str, query: list[tuple[str, str]], headers: list[tuple[str, str]], where: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        check_request(path, query, headers)
    assert caught.value.message.startswith(f"Invalid input received: {where} contains ")
