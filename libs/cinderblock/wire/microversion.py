"""Microversion negotiation for the ``OpenStack-API-Version`` header (spec §1.3)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from cinderblock.wire.faults import BadRequest, Fault, NotAcceptable

HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Volume-API-Version"
SERVICE = "volume"

_VERSION_RE = re.compile(r"^[1-9]\d*\.([1-9]\d*|0)$")
_WEBOB_BAD_REQUEST = (
    "The server could not comply with the request since it is either malformed "
    "or otherwise incorrect."
)


class APIVersion(NamedTuple):
    """A ``major.minor`` API version; compares like a tuple."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def parse(cls, text: str) -> APIVersion:
        """Parse ``"3.42"``.

        Raises:
            ValueError: ``text`` is not ``MajorNum.MinorNum`` without leading zeros.
        """
        if not _VERSION_RE.fullmatch(text):
            raise ValueError(
                f"API Version String {text} is of invalid format. "
                "Must be of format MajorNum.MinorNum."
            )
        major, minor = text.split(".")
        return cls(int(major), int(minor))

    def matches(self, min: str | APIVersion) -> bool:
        """True when this version is at least ``min`` (the parameter name is public API)."""
        floor = APIVersion.parse(min) if isinstance(min, str) else min
        return self >= floor


MIN_VERSION = APIVersion(3, 0)
MAX_VERSION = APIVersion(3, 71)


class MicroversionError(Exception):
    """Raised by :func:`negotiate` when the requested version is unusable.

    ``status`` is 400 (unparseable header) or 406 (out of range); ``echo`` is the
    version to put in the response's ``OpenStack-API-Version`` header, or None.
    """

    def __init__(self, status: int, message: str, echo: APIVersion | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.echo = echo

    def to_fault(self) -> Fault:
        """The Cinder fault for this error, with the version headers when echoed."""
        fault: Fault = (
            NotAcceptable(self.message) if self.status == 406 else BadRequest(self.message)
        )
        if self.echo is not None:
            fault.headers.update(response_headers(self.echo))
        return fault


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _volume_token(value: str) -> str:
    """The version token of the first comma-separated element naming ``volume``."""
    for element in value.split(","):
        if SERVICE in element:
            tokens = element.split()
            if len(tokens) != 2:
                # Cinder answers 500 here (QUIRK); we answer 400.
                raise MicroversionError(
                    400,
                    f"Invalid {HEADER} header element {element.strip()!r}. "
                    "Must be of format 'volume MajorNum.MinorNum'.",
                )
            return tokens[1]
    raise MicroversionError(400, _WEBOB_BAD_REQUEST)


def _legacy_token(value: str) -> str:
    """``X-OpenStack-Volume-API-Version`` carries ``3.x`` (or ``volume 3.x``)."""
    tokens = value.split()
    if len(tokens) == 2 and SERVICE in tokens[0]:
        return tokens[1]
    return value.strip()


def _resolve(token: str) -> APIVersion:
    if token == "latest":
        return MAX_VERSION
    try:
        version = APIVersion.parse(token)
    except ValueError as err:
        raise MicroversionError(400, str(err)) from err
    if not MIN_VERSION <= version <= MAX_VERSION:
        text = str(version)
        # Cinder's legacy check: no version header when the string has 1.0 or 2.0.
        echo = None if ("1.0" in text or "2.0" in text) else version
        raise MicroversionError(
            406,
            f"Version {text} is not supported by the API. "
            f"Minimum is {MIN_VERSION} and maximum is {MAX_VERSION}.",
            echo,
        )
    return version


def negotiate(headers: Mapping[str, str]) -> APIVersion:
    """The request's API version from its headers (keys matched case-insensitively).

    No header means 3.0; ``latest`` means :data:`MAX_VERSION`.

    Raises:
        MicroversionError: 400 for a malformed header, 406 for a version out of range.
    """
    value = _header(headers, HEADER)
    if value is not None:
        return _resolve(_volume_token(value))
    legacy = _header(headers, LEGACY_HEADER)
    if legacy is not None:
        return _resolve(_legacy_token(legacy))
    return MIN_VERSION


def response_headers(version: APIVersion) -> dict[str, str]:
    """Headers every v3 response carries once a version was parsed."""
    return {HEADER: f"{SERVICE} {version}", "Vary": HEADER}
