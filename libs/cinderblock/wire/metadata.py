"""Request bodies of the metadata endpoints (`/volumes/{id}/metadata[/{key}]` and
`/snapshots/{id}/metadata[/{key}]`), checked as Cinder's JSON schemas check them.

One implementation for both resources; they differ only where Cinder's schemas do: volume
keys may contain ``/`` and volume bodies allow no keys besides ``metadata``/``meta``, while
snapshot bodies ignore other top-level keys. The first failure is reported in jsonschema's
keyword order (type, values, key pattern, item count) with its wording.

Cinder's schemas declare a top-level property ``type`` whose schema is the string
``"object"``; jsonschema crashes on it (AttributeError, a 500). Here ``type`` is an
unexpected key of a volume body (400) and ignored in a snapshot body, like any other key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cinderblock.wire.messages import (
    SchemaError,
    additional_properties,
    not_of_type,
    required_property,
)

VOLUME_KEY_PATTERN = "^[a-zA-Z0-9-_:. /]{1,255}$"
SNAPSHOT_KEY_PATTERN = "^[a-zA-Z0-9-_:. ]{1,255}$"
MAX_VALUE_LENGTH = 255
MAX_TEXT_BYTES = 65535  # Cinder's ``mysql_text`` format (image metadata values)

MISMATCH = "Request body and URI mismatch"
TOO_MANY_ITEMS = "Request body contains too many items"


@dataclass(frozen=True)
class MetadataSchema:
    """The rules of one resource's metadata bodies.

    Attributes:
        key_pattern: the ``patternProperties`` regex every key must match (searched, as
            jsonschema does, so ``$`` also matches before a final newline).
        extra_keys_allowed: top-level keys besides the one required are ignored (snapshot
            schemas) rather than refused (volume schemas).
        mysql_text: values are checked as Cinder's ``mysql_text`` format (at most 65535
            UTF-8 bytes: image metadata) instead of ``maxLength: 255``.
    """

    key_pattern: str
    extra_keys_allowed: bool
    mysql_text: bool = False

    def parse_all(self, body: object) -> dict[str, str]:
        """``{"metadata": {...}}`` of POST and PUT on the collection.

        Raises:
            SchemaError: the body breaks the schema; ``str()`` is Cinder's message.
        """
        return self._items(body, "metadata", single=False)

    def parse_item(self, body: object, key: str) -> dict[str, str]:
        """``{"meta": {key: value}}`` of PUT on one key: exactly one item, named as in
        the URL.

        Raises:
            SchemaError: the body breaks the schema, or names another key than ``key``.
        """
        item = self._items(body, "meta", single=True)
        if key not in item:
            raise SchemaError(MISMATCH)
        if len(item) > 1:  # the schema's maxProperties catches this first, as in Cinder
            raise SchemaError(TOO_MANY_ITEMS)
        return item

    def _items(self, body: object, field: str, *, single: bool) -> dict[str, str]:
        if not isinstance(body, dict):
            raise SchemaError(not_of_type(body, "object"))
        if field in body:
            self.check_object(body[field], field, single=single)
        else:
            raise SchemaError(required_property(field))
        extra = sorted(k for k in body if k != field)
        if extra and not self.extra_keys_allowed:
            raise SchemaError(additional_properties(extra))
        return dict(body[field])

    def check_object(self, value: object, field: str, *, single: bool = False) -> None:
        """The object of ``field`` (``metadata`` or ``meta``): its values, then its keys.

        Raises:
            SchemaError: as jsonschema words it.
        """
        if not isinstance(value, dict):
            raise SchemaError(not_of_type(value, "object"), field=field, value=value)
        unmatched = []
        for key, item in value.items():
            if not re.search(self.key_pattern, key):
                unmatched.append(key)
                continue
            if not isinstance(item, str):
                raise SchemaError(not_of_type(item, "string"), field=key, value=item)
            if self.mysql_text and len(item.encode("utf-8")) > MAX_TEXT_BYTES:
                raise SchemaError(f"{item!r} is not a 'mysql_text'", field=key, value=item)
            if not self.mysql_text and len(item) > MAX_VALUE_LENGTH:
                raise SchemaError(f"{item!r} is too long", field=key, value=item)
        if unmatched:
            verb = "does" if len(unmatched) == 1 else "do"
            keys = ", ".join(repr(k) for k in sorted(unmatched))
            reason = f"{keys} {verb} not match any of the regexes: {self.key_pattern!r}"
            raise SchemaError(reason, field=field, value=value)
        if single and not value:
            raise SchemaError(f"{value!r} should be non-empty", field=field, value=value)
        if single and len(value) > 1:
            raise SchemaError(f"{value!r} has too many properties", field=field, value=value)


VOLUME_METADATA = MetadataSchema(VOLUME_KEY_PATTERN, extra_keys_allowed=False)
SNAPSHOT_METADATA = MetadataSchema(SNAPSHOT_KEY_PATTERN, extra_keys_allowed=True)
# os-set_image_metadata's ``metadata`` (parameter_types.image_metadata).
IMAGE_METADATA = MetadataSchema(VOLUME_KEY_PATTERN, extra_keys_allowed=False, mysql_text=True)
