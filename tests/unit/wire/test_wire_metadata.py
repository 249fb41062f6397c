"""Metadata bodies of volumes and snapshots, and boolean query parameters, worded as
Cinder words them."""

from __future__ import annotations

import pytest

from cinderblock.wire.metadata import SNAPSHOT_METADATA, VOLUME_METADATA
from cinderblock.wire.schema import SchemaError, parse_query_bool


def test_keys_follow_each_resources_pattern() -> None:
    assert VOLUME_METADATA.parse_all({"metadata": {"a/b": "1"}}) == {"a/b": "1"}
    with pytest.raises(SchemaError, match="'a/b' does not match any of the regexes"):
        SNAPSHOT_METADATA.parse_all({"metadata": {"a/b": "1"}})
    # jsonschema searches the pattern: "$" also matches before a final newline
    assert SNAPSHOT_METADATA.parse_all({"metadata": {"k\n": "v"}}) == {"k\n": "v"}


def test_several_bad_keys_are_listed_sorted() -> None:
    with pytest.raises(SchemaError) as err:
        VOLUME_METADATA.parse_all({"metadata": {"b!": "1", "": "2"}})
    assert str(err.value).endswith(
        "'', 'b!' do not match any of the regexes: '^[a-zA-Z0-9-_:. /]{1,255}$'"
    )


def test_extra_top_level_keys() -> None:
    assert SNAPSHOT_METADATA.parse_all({"metadata": {}, "type": "x"}) == {}
    with pytest.raises(SchemaError, match=r"\('type' was unexpected\)"):
        VOLUME_METADATA.parse_all({"metadata": {}, "type": "x"})


def test_values_before_keys_before_counts() -> None:
    with pytest.raises(SchemaError, match=r"^Invalid input for field/attribute a. Value: 1."):
        SNAPSHOT_METADATA.parse_item({"meta": {"a": 1, "": "x"}}, "a")
    with pytest.raises(SchemaError, match="does not match any of the regexes"):
        SNAPSHOT_METADATA.parse_item({"meta": {"a": "1", "": "x"}}, "a")
    with pytest.raises(SchemaError, match=r"has too many properties$"):
        SNAPSHOT_METADATA.parse_item({"meta": {"a": "1", "b": "x"}}, "a")
    with pytest.raises(SchemaError, match=r"^Request body and URI mismatch$"):
        SNAPSHOT_METADATA.parse_item({"meta": {"b": "x"}}, "a")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("true", True), ("TRUE", True), ("Yes", True), ("1", True), ("off", False)],
)
def test_query_booleans(value: str | None, expected: bool) -> None:
    assert parse_query_bool("cascade", value) is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", " true"])
def test_bad_query_booleans(value: str) -> None:
    with pytest.raises(SchemaError) as err:
        parse_query_bool("cascade", value)
    assert str(err.value) == f"Value '{value}' for 'cascade' is not a boolean."
