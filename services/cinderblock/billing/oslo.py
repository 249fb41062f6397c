"""Optional oslo.messaging notifier (the ``notify`` extra): the same notifications on an
oslo transport (RabbitMQ), topic ``notifications``, ``messagingv2`` envelope, so an
unmodified Ceilometer can listen.

oslo's ``Notifier`` gives every message a fresh uuid4; the event-derived ``message_id`` is
what lets a consumer drop a redelivered copy, so the messages are built here (the same dict
``Notifier._notify`` builds) and handed to oslo's ``messagingv2`` driver.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cinderblock.usage.notifications import Notification

log = logging.getLogger(__name__)

# The request-context keys oslo flattens into the message as ``_context_<key>``.
CONTEXT_KEYS = ("request_id", "global_request_id", "user_id", "project_id", "roles", "is_admin")


def _oslo() -> Any:
    with warnings.catch_warnings():
        # oslo.service (an oslo.messaging dependency) imports eventlet, which warns.
        warnings.simplefilter("ignore")
        import oslo_messaging
        import oslo_messaging.notify.messaging
    return oslo_messaging


class OsloNotifier:
    def __init__(self, url: str, *, topics: Sequence[str], exchange: str) -> None:
        from oslo_config import cfg

        messaging = _oslo()
        messaging.set_transport_defaults(control_exchange=exchange)
        self.conf = cfg.ConfigOpts()
        self.conf([], project="cinderblock", default_config_files=[], default_config_dirs=[])
        self.transport = messaging.get_notification_transport(self.conf, url=url)
        self.driver = messaging.notify.messaging.MessagingV2Driver(
            self.conf, topics=list(topics), transport=self.transport
        )
        # One thread: the transport's connection pool is used from one place.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oslo-notify")

    @staticmethod
    def context(meta: Mapping[str, Any]) -> dict[str, Any]:
        return {k: meta.get(k) for k in CONTEXT_KEYS if meta.get(k) is not None}

    def _send(self, notes: Sequence[Notification], ctxt: dict[str, Any]) -> None:
        for note in notes:
            self.driver.notify(ctxt, note.message(), note.priority.lower(), retry=3)

    async def send(self, notes: Sequence[Notification], meta: Mapping[str, Any]) -> None:
        """Send (blocking I/O in the notifier's thread). oslo's driver logs and drops a
        message the broker refuses, as in Cinder: the JetStream subjects are the durable
        path, this one is best effort."""
        if notes:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.executor, self._send, notes, self.context(meta))

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.transport.cleanup()
