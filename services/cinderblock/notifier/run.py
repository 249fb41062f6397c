"""The Nova notifier: a durable JetStream pull consumer of ``Volume.Extended`` and
``Volume.Reimaged`` that tells Nova (``os-server-external-events``: ``volume-extended`` for
extends of attached volumes, ``volume-reimaged`` for reimages of reserved ones) and records
the outcome on the volume. Off, and said so once, when CINDERBLOCK_NOVA_URL is
unset."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import asyncpg
from nats.aio.msg import Msg

from cinderblock.bus.connection import connect
from cinderblock.bus.jetstream import ConsumerSpec, ensure_stream, run_consumer
from cinderblock.config.settings import Settings
from cinderblock.identity.keystone import service_tokens
from cinderblock.notifier.consumers import REIMAGED, NovaNotifier
from cinderblock.notifier.nova import NovaClient, NovaConfig
from cinderblock.readmodels.quarantine import ConsumerQuarantine
from cinderblock.readmodels.waiter import ProjectionWaiter
from cinderblock.runtime.infra import alive, database
from cinderblock.runtime.outage import database_unavailable
from cinderblock.runtime.streams import stream_spec
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.volumes import Volumes
from cinderblock.store.writer import shared_writer
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)

DURABLE = "notifier"


def consumer_spec(settings: Settings) -> ConsumerSpec:
    """Its own durable on ``volume.events.Extended.>``, from the extends completed after it
    was first created (turning the notifier on does not replay history to Nova). The
    message is kept in progress before the read-model wait and before every Nova attempt,
    so the ack wait only has to outlast the longest of those steps (else JetStream would
    hand it to a second worker while the first is still calling Nova)."""
    longest = max(settings.read_wait, NovaConfig.of(settings).longest_call)
    return ConsumerSpec(
        stream=settings.stream,
        durable=f"{settings.subject_prefix.replace('.', '-')}{DURABLE}",
        filter_subjects=[
            settings.subject("volume.events.Extended.>"),
            settings.subject("volume.events.Reimaged.>"),
        ],
        ack_wait=max(settings.saga_ack_wait, longest + 1.0),
        max_deliver=settings.saga_max_deliver,
        workers=4,
        deliver_new=True,
    )


class NotifierRunner:
    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, waiter: ProjectionWaiter, nova: NovaClient
    ) -> None:
        self.pool = pool
        volumes = Volumes(AsyncEventStore(pool, writer=shared_writer(pool)))
        self.notifier = NovaNotifier(volumes, pool, waiter, nova, read_wait=settings.read_wait)
        self.spec = consumer_spec(settings)

    async def handle(self, msg: Msg) -> None:
        env = ReceivedEnvelope.model_validate_json(msg.data)
        if env.type == REIMAGED:
            await self.notifier.on_reimaged_notify_nova(env, keepalive=msg.in_progress)
        else:
            await self.notifier.on_extended_notify_nova(env, keepalive=msg.in_progress)

    async def park(self, msg: Msg, error: str) -> None:
        """Last delivery failed: record the failure on the volume, keep the message."""
        env = ReceivedEnvelope.model_validate_json(msg.data)
        await self.notifier.give_up(env, error)
        await self.pool.execute(
            "INSERT INTO dead_letters (consumer, subject, msg_id, deliveries, error, payload) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            self.spec.durable,
            msg.subject,
            env.id,
            msg.metadata.num_delivered,
            error,
            msg.data,
        )


async def run(settings: Settings, *, stop: asyncio.Event) -> None:
    if not settings.nova_url:
        log.info(
            "nova notifier off: CINDERBLOCK_NOVA_URL is unset, Nova is not told about extends",
            extra={"service": "notifier", "enabled": False},
        )
        with alive("notifier"):
            await stop.wait()
        return
    settings.require_servers()
    async with (
        database(settings, max_size=4) as pool,
        connect(settings.nats_url, "notifier") as nc,
        aiohttp.ClientSession() as session,
    ):
        js = nc.jetstream()
        await ensure_stream(js, stream_spec(settings))
        waiter = ProjectionWaiter(pool)
        await waiter.start()
        try:
            tokens = service_tokens(settings, session)
            client = NovaClient(session, NovaConfig.of(settings), tokens=tokens)
            runner = NotifierRunner(settings, pool, waiter, client)
            log.info(
                "nova notifier on",
                extra={
                    "service": "notifier",
                    "enabled": True,
                    "nova_url": settings.nova_url,
                    "durable": runner.spec.durable,
                    "auth": "keystone" if tokens is not None else "static token",
                },
            )
            with alive("notifier"):
                # Undecodable messages are parked at once; each notification stands alone,
                # so nothing is held behind a failed one.
                gate = ConsumerQuarantine(pool, runner.spec.durable, hold=False)
                await run_consumer(
                    js,
                    runner.spec,
                    runner.handle,
                    runner.park,
                    stop,
                    None,
                    gate,
                    outage=database_unavailable,
                )
        finally:
            await waiter.stop()
