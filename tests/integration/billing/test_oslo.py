"""The optional oslo.messaging notifier against the machine's RabbitMQ, heard by an
oslo.messaging notification listener as Ceilometer would listen (topic, exchange,
messagingv2): Cinder's event types, priorities, payloads, the event-derived message_id and
the request context. Skipped when the `notify` extra or RabbitMQ is missing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import socket
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import nats
import pytest

from cinderblock.billing.run import notification_stream
from cinderblock.billing.run import run as run_billing
from cinderblock.bus.jetstream import ensure_stream
from cinderblock.relay.run import Relay
from cinderblock.runtime.infra import create_schemas
from cinderblock.runtime.streams import stream_spec
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.usage.notifications import message_id, volume_notifications
from tests.helpers.events import new_volume
from tests.helpers.servers import Servers, fresh_database, make_settings
from tests.helpers.usage import HOUR, T0, Life

pytestmark = pytest.mark.integration

RABBIT_URL = os.environ.get("CINDERBLOCK_TEST_RABBIT_URL", "rabbit://guest:guest@127.0.0.1:5672/")


def _oslo() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("oslo_messaging")


def _rabbit_reachable() -> bool:
    parts = urlsplit(RABBIT_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2):
            return True
    except OSError:
        return False


class Heard:
    """A Ceilometer-like endpoint: every notification it hears goes to a queue."""

    def __init__(self) -> None:
        self.got: queue.Queue[dict[str, Any]] = queue.Queue()

    def _keep(self, priority: str, ctxt: Any, publisher_id: str, event_type: str,
              payload: Any, metadata: Any) -> None:  # fmt: skip
        self.got.put(
            {
                "priority": priority,
                "ctxt": dict(ctxt),
                "publisher_id": publisher_id,
                "event_type": event_type,
                "payload": payload,
                "metadata": dict(metadata),
            }
        )

    def info(self, *args: Any) -> None:
        self._keep("INFO", *args)

    def error(self, *args: Any) -> None:
        self._keep("ERROR", *args)


def _cleanup(exchange: str, topic: str) -> None:
    import amqp

    parts = urlsplit(RABBIT_URL)
    conn = amqp.Connection(
        f"{parts.hostname}:{parts.port or 5672}",
        userid=parts.username or "guest",
        password=parts.password or "guest",
    )
    conn.connect()
    try:
        channel = conn.channel()
        for priority in ("info", "error"):
            channel.queue_delete(f"{topic}.{priority}")
        channel.exchange_delete(exchange)
    finally:
        conn.close()


@contextlib.contextmanager
def listening(exchange: str, topic: str) -> Iterator[Heard]:
    """An oslo notification listener on ``exchange``/``topic`` for the block's duration."""
    messaging = _oslo()
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf([], project="cinderblock-test", default_config_files=[], default_config_dirs=[])
    heard = Heard()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transport = messaging.get_notification_transport(conf, url=RABBIT_URL)
        listener = messaging.get_notification_listener(
            transport,
            [messaging.Target(topic=topic, exchange=exchange)],
            [heard],
            executor="threading",
        )
        listener.start()
    try:
        yield heard
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            listener.stop()
            listener.wait()
            transport.cleanup()
        _cleanup(exchange, topic)


async def test_the_billing_service_sends_through_oslo_when_configured(
    servers: Servers, data_dir: Path
) -> None:
    _oslo()
    if not _rabbit_reachable():
        pytest.skip(f"no RabbitMQ at {RABBIT_URL}")
    tag = uuid.uuid4().hex[:8]
    exchange, topic = f"cbtest-{tag}", f"notifications-{tag}"
    async with fresh_database(servers) as url:
        settings = make_settings(url, servers.nats_url, f"O{tag}", data_dir).model_copy(
            update={
                "notification_transport_url": RABBIT_URL,
                "notification_topics": topic,
                "notification_exchange": exchange,
            }
        )
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        nc = await nats.connect(servers.nats_url)
        js = nc.jetstream()
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            await create_schemas(pool)
            await ensure_stream(js, stream_spec(settings))
            with listening(exchange, topic) as heard:
                tasks += [
                    asyncio.create_task(Relay(settings, pool, js).follow(stop)),
                    asyncio.create_task(run_billing(settings, stop=stop)),
                ]
                volume = new_volume(
                    "p1",
                    user_id="u1",
                    name="v",
                    size_gb=4,
                    volume_type_id="type-a",
                    volume_type_name="a",
                )
                await AsyncEventStore(pool).save(volume, meta={"request_id": "req-o"})
                got = await asyncio.to_thread(heard.got.get, True, 20)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            for name in (settings.stream, notification_stream(settings).name):
                with contextlib.suppress(Exception):
                    await js.delete_stream(name)
            await nc.close()
            await pool.close()
    assert got["event_type"] == "volume.create.start"
    assert got["payload"]["volume_id"] == str(volume.id)
    assert got["payload"]["size"] == 4
    assert got["ctxt"]["request_id"] == "req-o"
    expected = message_id(volume.id, 1, "volume.create.start")
    assert got["metadata"]["message_id"] == expected


async def test_ceilometer_style_listener_hears_cinder_notifications() -> None:
    _oslo()
    if not _rabbit_reachable():
        pytest.skip(f"no RabbitMQ at {RABBIT_URL}")
    from cinderblock.billing.oslo import OsloNotifier

    tag = uuid.uuid4().hex[:8]
    exchange, topic = f"cbtest-{tag}", f"notifications-{tag}"
    life = Life(size_gb=2)
    life.step(T0 + HOUR, lambda v: v.fail_create("No valid backend was found."))
    notes = [
        *volume_notifications(life.events, 1, default_host="api1"),
        *volume_notifications(life.events, 2, default_host="api1"),
    ]
    assert [(n.event_type, n.priority) for n in notes] == [
        ("volume.create.start", "INFO"),
        ("scheduler.create_volume", "ERROR"),
    ]

    with listening(exchange, topic) as heard:
        notifier = OsloNotifier(RABBIT_URL, topics=[topic], exchange=exchange)
        try:
            meta = {"request_id": "req-oslo-1", "user_id": "u1", "project_id": "p1", "secret": "x"}
            await notifier.send(notes, meta)
            got = [await asyncio.to_thread(heard.got.get, True, 20) for _ in notes]
        finally:
            notifier.close()

    by_type = {g["event_type"]: g for g in got}
    for note in notes:
        g = by_type[note.event_type]
        assert g["priority"] == note.priority
        assert g["publisher_id"] == note.publisher_id
        assert g["payload"] == note.payload
        assert g["metadata"]["message_id"] == note.message_id
        assert g["metadata"]["timestamp"] == note.timestamp
        assert g["ctxt"]["request_id"] == "req-oslo-1"
        assert g["ctxt"]["project_id"] == "p1"
        assert "secret" not in g["ctxt"]
    assert by_type["volume.create.start"]["payload"]["size"] == 2
