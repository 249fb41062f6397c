"""What the stores can hold: the one rule that refuses, at the edge, text PostgreSQL cannot keep.

PostgreSQL ``text`` and ``jsonb`` cannot hold U+0000, and a lone surrogate (U+D800-U+DFFF
unpaired, which ``json.loads`` accepts from ``"\\ud800"`` and from UTF-8-encoded surrogate
bytes) cannot be encoded as UTF-8 at all. Accepted, such a string is appended to the log and
then stops every projection of it. So every string a request carries (each key and value of
a JSON body at any depth, the decoded path, each query parameter's name and value, each
header) passes :func:`check_text` before anything is decided, and a failure is a 400.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from cinderblock.wire.faults import BadRequest

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """True when ``text`` holds neither U+0000 nor a lone surrogate."""
    return _UNSTORABLE.search(text) is None


def unstorable(where: str) -> BadRequest:
    """400 for a string the stores cannot hold; ``where`` says which part of the request."""
    return BadRequest(
        f"Invalid input received: {where} contains U+0000 or an unpaired surrogate "
        "(a character that cannot be stored)."
    )


def check_text(text: str, where: str) -> None:
    """Raise :func:`unstorable` (``BadRequest``) when ``text`` cannot be stored."""
    if _UNSTORABLE.search(text) is not None:
        raise unstorable(where)


# Where a value sits: its key and the place of its container (None at the top). Linked, not
# copied: a path as a tuple per value cost time quadratic in the depth.
_Place = tuple["_Place | None", str] | None


def _pointer(place: _Place) -> str:
    # Keys rendered as JSON (ASCII) so a key holding the bad character can still be named.
    keys: list[str] = []
    while place is not None:
        place, key = place
        keys.append(key)
    return "/".join(json.dumps(key) for key in reversed(keys))


def check_document(document: object, where: str = "request body") -> None:
    """Check every key and string value of a decoded JSON document, at any depth.

    Iterative, so a deeply nested document costs no recursion, and linear in its size.

    Raises:
        BadRequest: a key or string value cannot be stored; the message names its path.
    """
    pending: list[tuple[_Place, object]] = [(None, document)]
    while pending:
        place, value = pending.pop()
        if isinstance(value, str):
            if not storable(value):
                raise unstorable(f"{where} at {_pointer(place)}" if place else where)
        elif isinstance(value, dict):
            for key, item in value.items():
                here = (place, str(key))
                if not storable(str(key)):
                    raise unstorable(f"{where} at {_pointer(here)}")
                pending.append((here, item))
        elif isinstance(value, list):
            pending.extend(((place, str(i)), item) for i, item in enumerate(value))


def loads(raw: bytes | str) -> object:
    """Decode a JSON request body and apply the rule to it: every JSON body goes through here.

    Raises:
        BadRequest: ``Malformed request body`` for what is not JSON; :func:`unstorable`
            for a string the stores cannot hold.
    """
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise BadRequest("Malformed request body") from err
    check_document(document)
    return document


def check_request(
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Iterable[tuple[str, str]],
) -> None:
    """Check the decoded path, each query parameter's name and value, and each header.

    Raises:
        BadRequest: the first part that cannot be stored, named (never echoed).
    """
    check_text(path, "the URL path")
    for name, value in query:
        check_text(name, "a query parameter name")
        check_text(value, f"query parameter {json.dumps(name)}")
    for name, value in headers:
        check_text(name, "a header name")
        check_text(value, f"header {json.dumps(name)}")
