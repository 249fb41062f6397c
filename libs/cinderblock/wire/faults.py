"""Cinder fault bodies: ``{"<faultName>": {"code": N, "message": "..."}}`` (spec §1.6).

The class names are the public contract of this package; they mirror Cinder's
webob faults rather than ending in ``Error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

FAULT_NAMES: Mapping[int, str] = MappingProxyType(
    {
        400: "badRequest",
        401: "unauthorized",
        403: "forbidden",
        404: "itemNotFound",
        405: "badMethod",
        409: "conflictingRequest",
        413: "overLimit",
        415: "badMediaType",
        501: "notImplemented",
        503: "serviceUnavailable",
    }
)
DEFAULT_FAULT_NAME = "computeFault"

_DEFAULT_MESSAGES: Mapping[int, str] = MappingProxyType(
    {
        400: (
            "The server could not comply with the request since it is either "
            "malformed or otherwise incorrect."
        ),
        401: "This server could not verify that you are authorized to access the resource.",
        403: "Access was denied to this resource.",
        404: "The resource could not be found.",
        405: "The method is not allowed for this resource.",
        406: "The resource could not be generated in an acceptable form.",
        409: "There was a conflict when trying to complete your request.",
        413: "The body of your request was too large for this server.",
        415: "The request media type is not supported by this server.",
        501: "The server has not implemented the request method.",
        503: "Service is unavailable at this time.",  # Cinder's ServiceUnavailable
    }
)
_GENERIC_MESSAGE = (
    "The server has either erred or is incapable of performing the requested operation."
)


def fault_name(status: int) -> str:
    """The Cinder fault name for an HTTP status (``computeFault`` when unlisted)."""
    return FAULT_NAMES.get(status, DEFAULT_FAULT_NAME)


class Fault(Exception):  # noqa: N818 - Cinder's name for an HTTP error reply
    """An HTTP error reply in Cinder's JSON fault format.

    Raised by wire parsers and handlers; the API's error middleware renders
    :meth:`body` with ``status`` and ``headers``.
    """

    status: int = 500

    def __init__(
        self,
        status: int,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.message = message if message is not None else _default_message(status)
        self.headers: dict[str, str] = dict(headers or {})
        if status == 413:
            self.headers.setdefault("Retry-After", "0")
        super().__init__(self.message)

    @property
    def name(self) -> str:
        """The fault name used as the body's only key."""
        return fault_name(self.status)

    def body(self) -> dict[str, dict[str, object]]:
        """The JSON body of the reply."""
        inner: dict[str, object] = {"code": self.status, "message": self.message}
        if self.status == 413:
            inner["retryAfter"] = "0"
        return {self.name: inner}


def _default_message(status: int) -> str:
    return _DEFAULT_MESSAGES.get(status, _GENERIC_MESSAGE)


class _FixedFault(Fault):
    """A fault whose status is fixed by the class: ``BadRequest("text")``."""

    def __init__(
        self, message: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(type(self).status, message, headers)


class BadRequest(_FixedFault):
    """400 ``badRequest``: invalid input, or a status/size rule broken."""

    status = 400


class Unauthorized(_FixedFault):
    """401 ``unauthorized``: no usable identity."""

    status = 401


class Forbidden(_FixedFault):
    """403 ``forbidden``: a policy rule denied the call."""

    status = 403


class NotFound(_FixedFault):
    """404 ``itemNotFound``: missing, hidden, or not available at this microversion."""

    status = 404


class BadMethod(_FixedFault):
    """405 ``badMethod``."""

    status = 405


class NotAcceptable(_FixedFault):
    """406 ``computeFault``: the requested microversion is out of range."""

    status = 406


class Conflict(_FixedFault):
    """409 ``conflictingRequest``: e.g. a version conflict that persisted."""

    status = 409


class OverLimit(_FixedFault):
    """413 ``overLimit``: a quota was exceeded; message is ``"<exc_name>: <message>"``."""

    status = 413

    def __init__(
        self, exc_name: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        self.exc_name = exc_name
        super().__init__(f"{exc_name}: {message}", headers)


class BadMediaType(_FixedFault):
    """415 ``badMediaType``: the request's Content-Type is not JSON."""

    status = 415


class NotImplementedFault(_FixedFault):
    """501 ``notImplemented``."""

    status = 501


class ServiceUnavailable(_FixedFault):
    """503 ``serviceUnavailable``: a server the API needs (the database) does not answer
    now; ``Retry-After`` tells the client when asking again is worth it."""

    status = 503

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(message, {"Retry-After": str(retry_after)})


def volume_not_found(volume_id: str) -> NotFound:
    """404 for a volume that is absent or belongs to another project."""
    return NotFound(f"Volume {volume_id} could not be found.")


def policy_forbidden(rule: str) -> Forbidden:
    """403 for a denied policy rule, e.g. ``volume:extend``."""
    return Forbidden(f"Policy doesn't allow {rule} to be performed.")


def invalid_input(reason: str) -> BadRequest:
    """400 ``Invalid input received: <reason>`` (Cinder's InvalidInput)."""
    return BadRequest(f"Invalid input received: {reason}")


def invalid_volume(reason: str) -> BadRequest:
    """400 ``Invalid volume: <reason>`` (Cinder's InvalidVolume)."""
    return BadRequest(f"Invalid volume: {reason}")


def resource_not_found() -> NotFound:
    """404 with the generic text, e.g. for an action not available at this version."""
    return NotFound("The resource could not be found.")
