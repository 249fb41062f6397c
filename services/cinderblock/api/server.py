"""Requests aiohttp's HTTP parser refuses (a malformed request line or method, a header
line over its 8190-byte limit, broken framing) never reach the application or its
middleware: aiohttp answers them itself from ``RequestHandler.handle_error``, in plain
text. Here that answer is Cinder's fault body instead, with the request-id and version
headers every response carries.

Status: 400 ``badRequest`` for everything the parser refuses, as aiohttp decides it. Cinder
under eventlet answers an over-long header line and a bad request line with 400 too (only
an over-long request line is 414 there). An unknown but well-formed method (``FOO``) is
not a parse error: it is routed, and the middleware answers 405 ``badMethod``.

aiohttp has no public hook for this: ``CinderAppRunner`` builds its ``web.Server`` with a
``RequestHandler`` subclass overriding ``handle_error`` (stable since aiohttp 3.0);
tests/integration/api_edge pins the behaviour on the installed version.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest

from cinderblock.api.middleware import OBSERVER, Observer
from cinderblock.wire.faults import Fault
from cinderblock.wire.microversion import MIN_VERSION
from cinderblock.wire.microversion import response_headers as version_headers

log = logging.getLogger(__name__)


def fault_reply(status: int) -> web.Response:
    """The Cinder fault for a request the parser refused (or a crash past the middleware)."""
    fault = Fault(status if status >= 400 else 500)
    response = web.json_response(fault.body(), status=fault.status)
    response.headers.update(fault.headers)
    response.headers.update(version_headers(MIN_VERSION))
    response.headers["x-openstack-request-id"] = f"req-{uuid.uuid4()}"
    response.force_close()  # the parser's state is unknown after the error
    return response


class CinderRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering its own errors with Cinder faults."""

    observer: Observer | None = None  # told of each request the parser refused (metrics)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:  # a crash past the middleware: aiohttp logs it with its traceback
            plain = super().handle_error(request, status, exc, message)
        else:
            if request.writer.output_size > 0:  # as aiohttp: too late for another reply
                raise ConnectionError("Response is sent already, cannot send an error reply")
            plain = None
            log.info(
                "%s refused by the HTTP parser: %s",
                status,
                message or exc,
                extra={"remote_addr": request.remote},
            )
            if self.observer is not None:
                with contextlib.suppress(Exception):  # counting never costs the reply
                    self.observer.refused_by_parser(status)
        try:
            return fault_reply(status)
        except Exception:  # never take the connection handler down: aiohttp's own reply
            log.exception("building the fault reply failed")
            if plain is None:
                plain = super().handle_error(request, status, exc, message)
            return plain


class CinderServer(web.Server):
    """``web.Server`` whose connections are ``CinderRequestHandler``s."""

    observer: Observer | None = None

    def __call__(self) -> web.RequestHandler:
        handler = CinderRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.observer = self.observer
        return handler


class CinderAppRunner(web.AppRunner):
    """``web.AppRunner`` serving the application through a ``CinderServer``."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # starts the app as AppRunner does
        kwargs: dict[str, Any] = dict(server._kwargs)
        cinder = CinderServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            **kwargs,
        )
        cinder.observer = self.app.get(OBSERVER)
        return cinder
