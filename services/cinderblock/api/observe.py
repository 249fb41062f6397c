"""What the API records of every request it answers, in one place (the middleware's
``OBSERVER``): one access log line, the HTTP metrics, and the facts of its audit record.

- Access log (logger ``cinderblock.api.access``): method, route template, status, duration
  in ms, request ids, project, user, address, the volume the path names, the action of
  ``POST …/action``, and the fault of a refusal (a refused request appends no event: this
  line is its trail); structured (JSON lines, or ``key=value`` in text logs).
- Metrics (``cinderblock.runtime.metrics``): by route template, never the raw path, so no
  volume id becomes a label.
- Audit (``cinderblock.audit.requests``): every request under /v3, reads and refusals too;
  discovery, health and metrics are not audited (keystonemiddleware's ignore_path_list,
  and Cinder's paste pipeline serves them outside the audited one).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from aiohttp import web

from cinderblock.api.middleware import ACTION, CTX, PUBLIC_PATHS, log_fields
from cinderblock.audit.cadf import RequestFacts
from cinderblock.audit.requests import RequestLog
from cinderblock.runtime.metrics import UNMATCHED, Metrics
from cinderblock.wire.faults import Fault

access_log = logging.getLogger("cinderblock.api.access")

# Ids of path segments that are not the resource a request is about.
_NOT_TARGETS = frozenset({"project_id"})


def route_template(request: web.Request) -> str:
    """The request's route as registered (``/v3/{project_id}/volumes/{volume_id}``), or
    ``unmatched`` for a path no route serves."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def _target_id(request: web.Request) -> str | None:
    ids = [
        value
        for name, value in request.match_info.items()
        if name.endswith("_id") and name not in _NOT_TARGETS
    ]
    return ids[-1] if ids else None


class RequestObserver:
    """The middleware's observer: log, count and keep the facts of each answered request."""

    def __init__(
        self,
        metrics: Metrics | None,
        request_log: RequestLog | None,
        unaudited: Collection[str] = PUBLIC_PATHS,
    ) -> None:
        self.metrics = metrics
        self.request_log = request_log
        self.unaudited = frozenset(unaudited)

    def begin(self) -> None:
        if self.metrics is not None:
            self.metrics.http.in_flight.inc()

    def refused_by_parser(self, status: int) -> None:
        if self.metrics is not None:
            self.metrics.http.refused_by_parser(status)

    def __call__(
        self,
        request: web.Request,
        request_id: str,
        response: web.StreamResponse | None,
        seconds: float,
        fault: Fault | None,
    ) -> None:
        if self.metrics is not None:
            self.metrics.http.in_flight.dec()
        if response is None:  # the answer failed (a client gone): nothing was answered
            return
        route = route_template(request)
        action = request.get(ACTION) or ""
        ctx = request.get(CTX)
        status = response.status
        duration_ms = round(seconds * 1000, 3)
        fields: dict[str, object] = {
            "method": request.method,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
            **log_fields(request, request_id),
            "action": action or None,
            "fault": fault.message if fault is not None else None,
        }
        access_log.info(
            "%s %s %s %.1f ms", request.method, route, status, duration_ms, extra=fields
        )
        if self.metrics is not None:
            self.metrics.http.observe(request.method, route, action, status, seconds)
        if self.request_log is not None and request.path not in self.unaudited:
            now = datetime.now(UTC)
            self.request_log.add(
                RequestFacts(
                    request_id=request_id,
                    at=now - timedelta(seconds=seconds),
                    status=status,
                    method=request.method,
                    path=request.path_qs,
                    route=None if route == UNMATCHED else route,
                    action=action or None,
                    fault=fault.message if fault is not None else None,
                    user_id=ctx.user_id if ctx is not None else None,
                    project_id=ctx.project_id if ctx is not None else None,
                    roles=sorted(ctx.roles) if ctx is not None else None,
                    is_admin=ctx.is_admin if ctx is not None else None,
                    remote_addr=request.remote,
                    global_request_id=ctx.global_request_id if ctx is not None else None,
                    microversion=str(ctx.version) if ctx is not None else None,
                    target_id=_target_id(request),
                    duration_ms=duration_ms,
                )
            )
