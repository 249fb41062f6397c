"""One middleware for every request: request ids, text the stores cannot hold refused,
microversion, identity (noauth or Keystone), and the mapping of every error to Cinder's
fault body. Nothing escapes as a bare 500, and a database outage is a 503 with
``Retry-After`` (cinderblock.api.outage)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Protocol

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.outage import DATABASE_WATCH, RETRY_AFTER, database_unavailable
from cinderblock.domain.attachments_api import AttachmentNotFoundError
from cinderblock.domain.errors import (
    AttachmentConflictError,
    InvalidInputError,
    InvalidVolumeError,
    MetadataNotFoundError,
    QuotaExceededError,
    VolumeConflictError,
    VolumeError,
    VolumeNotFoundError,
)
from cinderblock.domain.reimage import ReimageConflictError
from cinderblock.domain.snapshot import InvalidSnapshotError, SnapshotNotFoundError
from cinderblock.domain.volume_type import VolumeTypeExistsError, VolumeTypeNotFoundError
from cinderblock.identity.keystone import KeystoneUnavailableError, KeystoneValidator
from cinderblock.store.volumes import ConflictError
from cinderblock.wire.faults import (
    BadRequest,
    Conflict,
    Fault,
    Forbidden,
    NotFound,
    OverLimit,
    ServiceUnavailable,
    fault_name,
)
from cinderblock.wire.microversion import MIN_VERSION, MicroversionError, negotiate
from cinderblock.wire.microversion import response_headers as version_headers
from cinderblock.wire.policy import PolicyError
from cinderblock.wire.storable import check_request

log = logging.getLogger(__name__)

CTX = web.RequestKey("ctx", RequestContext)
KEYSTONE = web.AppKey("keystone", KeystoneValidator)
ACTION = web.RequestKey("action", str)
# Set for replies Cinder builds by hand (spec §1.5), which carry no x-compute-request-id:
# by DELETE handlers, and by the action dispatcher for rows of the action table
# (cinderblock.api.action_table) whose raw_reply is set.
RAW_REPLY = web.RequestKey("raw_reply", bool)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The request this task serves and its id, for log lines written below the handlers.
_SERVING: ContextVar[tuple[web.Request, str] | None] = ContextVar("serving", default=None)

_GLOBAL_ID = re.compile(r"^req-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")
# Paths served without a token or a microversion (discovery, health and metrics).
PUBLIC_PATHS = frozenset({"/", "/v3", "/v3/", "/healthcheck", "/metrics"})


def context(request: web.Request) -> RequestContext:
    return request[CTX]


def to_fault(err: BaseException) -> Fault:
    """Map a raised error to the Cinder fault a client gets."""
    match err:
        case Fault():
            return err
        case MicroversionError():
            return err.to_fault()
        case PolicyError():
            return Forbidden(str(err))
        case (
            VolumeNotFoundError()
            | MetadataNotFoundError()
            | VolumeTypeNotFoundError()
            | AttachmentNotFoundError()
            | SnapshotNotFoundError()
        ):
            return NotFound(err.message)
        case InvalidSnapshotError():  # its message already reads "Invalid snapshot: ..."
            return BadRequest(err.message)
        case VolumeTypeExistsError() | ReimageConflictError() | VolumeConflictError():
            return Conflict(err.message)
        case AttachmentConflictError():
            return Conflict(f"ConflictNovaUsingAttachment: {err.message}")
        case QuotaExceededError():
            return OverLimit(err.exc_name, err.message)
        case InvalidInputError():
            return BadRequest(f"Invalid input received: {err.message}")
        case InvalidVolumeError():
            return BadRequest(f"Invalid volume: {err.message}")
        case ConflictError():
            return Conflict(err.message)
        case VolumeError():
            return BadRequest(err.message)
        case web.HTTPRequestEntityTooLarge():
            return Fault(413, "Request is too large.")
        case web.HTTPException() if err.status >= 400:
            return Fault(err.status)
        case _ if database_unavailable(err):
            return ServiceUnavailable(retry_after=RETRY_AFTER)
    return Fault(500)


def _identity(request: web.Request) -> tuple[str, str, frozenset[str], bool] | None:
    """noauth as Cinder does it: ``X-Auth-Token: user:project``, every caller admin.

    Behind an authenticating proxy, an ``X-Roles`` header replaces the admin default:
    the caller then has exactly those roles and is admin only with role ``admin``.
    """
    token = request.headers.get("X-Auth-Token")
    if not token:
        return None
    user, _, project = token.partition(":")
    project = project or user
    roles_header = request.headers.get("X-Roles")
    if roles_header is None:
        return user, project, frozenset({"admin"}), True
    roles = frozenset(r.strip().lower() for r in roles_header.split(",") if r.strip())
    return user, project, roles, "admin" in roles


def _token_reply(request: web.Request) -> web.Response:
    """Cinder's noauth answer to a request without a token (an Auth 1.1 handshake)."""
    user = request.headers.get("X-Auth-User", "admin")
    project = request.headers.get("X-Auth-Project-Id", "admin")
    return web.Response(
        status=204,
        content_type="text/plain",
        headers={
            "X-Auth-Token": f"{user}:{project}",
            "X-Server-Management-Url": str(request.url),
        },
    )


Identity = tuple[str, str, frozenset[str], bool, frozenset[str]]


async def _keystone_identity(request: web.Request, keystone: KeystoneValidator) -> Identity:
    """Who the caller is by Keystone's word; identity headers a client sent are ignored.

    With a valid ``X-Service-Token`` carrying a service role (Nova calling on a user's
    behalf), an expired user token is still accepted, as keystonemiddleware does."""
    settings = keystone.settings
    token = request.headers.get("X-Auth-Token")
    if not token:
        raise UnauthorizedError
    service_roles: frozenset[str] = frozenset()
    service_token = request.headers.get("X-Service-Token")
    if service_token:
        service = await keystone.validate(service_token)
        if service is None or service.expired:
            raise UnauthorizedError
        service_roles = service.roles
        wanted = {r.lower() for r in settings.keystone_service_token_roles}
        if settings.keystone_service_token_roles_required and not service_roles & wanted:
            raise UnauthorizedError
    info = await keystone.validate(token, allow_expired=bool(service_token))
    if info is None or (info.expired and not service_token):
        raise UnauthorizedError
    if info.project_id is None:
        raise Forbidden("A project-scoped token is required.")
    return info.user_id, info.project_id, info.roles, "admin" in info.roles, service_roles


async def _context(request: web.Request, request_id: str) -> RequestContext | web.Response:
    version = negotiate(request.headers)
    keystone = request.app.get(KEYSTONE)
    if keystone is not None:
        identity: Identity | None = await _keystone_identity(request, keystone)
    else:
        noauth = _identity(request)
        identity = None if noauth is None else (*noauth, frozenset())
    if identity is None:
        return _token_reply(request)
    user, project, roles, is_admin, service_roles = identity
    project_in_url = request.match_info.get("project_id")
    if project_in_url is not None and project_in_url != project:
        raise BadRequest("Malformed request url")
    inbound = request.headers.get("X-OpenStack-Request-ID", "")
    return RequestContext(
        request_id=request_id,
        global_request_id=inbound if _GLOBAL_ID.match(inbound) else None,
        user_id=user,
        project_id=project,
        roles=roles,
        is_admin=is_admin,
        version=version,
        base_url=str(request.url.origin()),
        project_in_url=project_in_url,
        remote=request.remote,
        method=request.method,
        path=request.path,
        service_roles=service_roles,
    )


class UnauthorizedError(Exception):
    """No token, or a token Keystone does not vouch for: 401 as keystonemiddleware answers."""


def _unauthorized(request: web.Request) -> web.Response:
    keystone = request.app[KEYSTONE]
    body = {
        "error": {
            "code": 401,
            "title": "Unauthorized",
            "message": "The request you have made requires authentication.",
        }
    }
    return web.json_response(
        body, status=401, headers={"WWW-Authenticate": keystone.www_authenticate}
    )


def _keystone_unavailable() -> web.Response:
    body = {
        "error": {
            "code": 503,
            "title": "Service Unavailable",
            "message": "The Keystone service is temporarily unavailable.",
        }
    }
    return web.json_response(body, status=503)


def fault_response(fault: Fault) -> web.Response:
    response = web.json_response(fault.body(), status=fault.status)
    response.headers.update(fault.headers)
    return response


class Observer(Protocol):
    """Told of every request the middleware answers (``cinderblock.api.observe``: access
    log, metrics, audit record): ``begin`` when it comes in, then the request, its id, the
    response (None when answering failed), the seconds it took, and the fault of a refusal."""

    def begin(self) -> None: ...

    def refused_by_parser(self, status: int) -> None:
        """A request aiohttp's parser refused (``cinderblock.api.server``): no route, no
        middleware, its own log line there."""

    def __call__(
        self,
        request: web.Request,
        request_id: str,
        response: web.StreamResponse | None,
        seconds: float,
        fault: Fault | None,
    ) -> None: ...


OBSERVER = web.AppKey("observer", Observer)
FAULT = web.RequestKey("fault", Fault)


@web.middleware
async def cinder_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = f"req-{uuid.uuid4()}"
    observer = request.app.get(OBSERVER)
    if observer is not None:
        observer.begin()
    started = time.perf_counter()
    response: web.StreamResponse | None = None
    try:
        response = await _answer(request, handler, request_id)
        return response
    finally:
        if observer is not None:
            try:
                observer(
                    request, request_id, response, time.perf_counter() - started, request.get(FAULT)
                )
            except Exception:  # recording a request never changes its answer
                log.exception(
                    "observing the request failed", extra=_log_fields(request, request_id)
                )


async def _answer(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    version_hdrs: dict[str, str] = {}
    serving = _SERVING.set((request, request_id))
    try:
        # Before anything reads them: the path, query and headers hold only storable text.
        check_request(request.path, request.query.items(), request.headers.items())
        if request.path not in PUBLIC_PATHS:
            try:
                ctx = await _context(request, request_id)
            except UnauthorizedError:
                ctx = _unauthorized(request)
            except KeystoneUnavailableError as err:
                log.error("keystone unavailable: %s", err, extra=_log_fields(request, request_id))
                ctx = _keystone_unavailable()
            if isinstance(ctx, web.Response):
                ctx.headers["x-openstack-request-id"] = request_id
                return ctx
            request[CTX] = ctx
            version_hdrs = version_headers(ctx.version)
        else:
            version_hdrs = version_headers(MIN_VERSION)
        response = await handler(request)
        if request.path not in PUBLIC_PATHS and not request.get(RAW_REPLY, False):
            response.headers["x-compute-request-id"] = request_id
    except Exception as err:
        fault = to_fault(err)
        request[FAULT] = fault
        if isinstance(fault, ServiceUnavailable) and fault is not err:
            # An outage: one line per request here, one for the outage from the watch.
            watch = request.app.get(DATABASE_WATCH)
            if watch is not None:
                watch.lost(err)
            log.info(
                "503 database unavailable: %s: %s",
                type(err).__name__,
                err,
                extra=_log_fields(request, request_id),
            )
        elif fault.status >= 500:
            log.exception("unexpected error", extra=_log_fields(request, request_id))
        # A refusal's fault is in the request's access log line (cinderblock.api.observe).
        response = fault_response(fault)
        response.headers["x-compute-request-id"] = request_id
    finally:
        _SERVING.reset(serving)
    response.headers["x-openstack-request-id"] = request_id
    for name, value in version_hdrs.items():
        response.headers.setdefault(name, value)
    return response


def log_fields(request: web.Request, request_id: str) -> dict[str, str | None]:
    """Who and what of a request, for its log lines (the access line among them)."""
    return _log_fields(request, request_id)


def serving_log_fields() -> dict[str, str | None]:
    """The log fields of the request the current task serves (empty outside a request)."""
    serving = _SERVING.get()
    return _log_fields(*serving) if serving is not None else {}


def _log_fields(request: web.Request, request_id: str) -> dict[str, str | None]:
    """A refused request appends no event: this log line is its audit trail."""
    ctx = request.get(CTX)
    return {
        "request_id": request_id,
        "global_request_id": ctx.global_request_id if ctx else None,
        "volume_id": request.match_info.get("volume_id"),
        "action": request.get(ACTION) or f"{request.method} {request.path}",
        "user_id": ctx.user_id if ctx else None,
        "project_id": ctx.project_id if ctx else None,
        "remote_addr": request.remote,
    }


__all__ = [
    "ACTION",
    "CTX",
    "FAULT",
    "OBSERVER",
    "PUBLIC_PATHS",
    "Observer",
    "cinder_middleware",
    "context",
    "fault_name",
    "log_fields",
    "serving_log_fields",
    "to_fault",
]
