"""The sagas worker: a durable JetStream pull consumer that runs driver steps and records
their completion or compensation on the volume."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path

import asyncpg
from nats.aio.msg import Msg

from cinderblock.bus.connection import connect
from cinderblock.bus.jetstream import ConsumerSpec, ensure_stream, run_consumer
from cinderblock.config.settings import Settings
from cinderblock.drivers.base import PoolConfig, VolumeDriver
from cinderblock.drivers.faults import FaultInjectingDriver, FaultPlan
from cinderblock.drivers.file import FileDriver
from cinderblock.images.port import ImageService
from cinderblock.readmodels.backends import PoolReport, report
from cinderblock.readmodels.quarantine import ConsumerQuarantine
from cinderblock.runtime.images import build_image_service, close_image_service
from cinderblock.runtime.infra import alive, database
from cinderblock.runtime.outage import database_unavailable
from cinderblock.runtime.streams import stream_spec
from cinderblock.sagas.consumers import Sagas
from cinderblock.sagas.exports import ExportSaga
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.volumes import Volumes, VolumesConfig
from cinderblock.store.writer import shared_writer
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)

DURABLE = "sagas"


def build_driver(settings: Settings) -> VolumeDriver:
    """The file driver on the configured pools, wrapped by the fault injector when asked."""
    pools = [PoolConfig.parse(p) for p in settings.pools]
    driver: VolumeDriver = FileDriver(Path(settings.data_dir) / "volumes", pools)
    if settings.inject:
        plan = FaultPlan.parse(settings.inject)
        log.warning("driver fault injection on: %s", plan.describe())
        driver = FaultInjectingDriver(driver, plan)
    return driver


def consumer_spec(settings: Settings, sagas: Sagas) -> ConsumerSpec:
    """One durable consumer for every event type a saga reacts to: ``volume.extend_requested``
    listens on ``volume.events.ExtendRequested.>``."""

    def subject(event_type: str) -> str:
        aggregate, _, name = event_type.partition(".")
        camel = "".join(part.title() for part in name.split("_"))
        return settings.subject(f"{aggregate}.events.{camel}.>")

    return ConsumerSpec(
        stream=settings.stream,
        durable=f"{settings.subject_prefix.replace('.', '-')}{DURABLE}",
        filter_subjects=sorted(subject(t) for t in sagas.reactions),
        ack_wait=settings.saga_ack_wait,
        max_deliver=settings.saga_max_deliver,
    )


class SagaRunner:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        driver: VolumeDriver,
        images: ImageService | None = None,
    ) -> None:
        self.pool = pool
        store = AsyncEventStore(pool, writer=shared_writer(pool))
        volumes = Volumes(store, VolumesConfig(quota_limits=settings.quota_limits))
        self.driver = driver
        self.images = images if images is not None else build_image_service(settings)
        self.sagas = Sagas(volumes, driver, self.images)
        ExportSaga(volumes, driver).register(self.sagas.reactions, self.sagas.give_up)
        self.spec = consumer_spec(settings, self.sagas)

    async def handle(self, msg: Msg) -> None:
        env = ReceivedEnvelope.model_validate_json(msg.data)
        reaction = self.sagas.reactions.get(env.type)
        if reaction is not None:
            await reaction(env)

    async def park(self, msg: Msg, error: str) -> None:
        """Last delivery failed: compensate on the volume, then keep the message."""
        env = ReceivedEnvelope.model_validate_json(msg.data)
        give_up = self.sagas.give_up.get(env.type)
        if give_up is not None:
            await give_up(env)
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


async def run(
    settings: Settings, *, stop: asyncio.Event, driver: VolumeDriver | None = None
) -> None:
    settings.require_servers()
    async with database(settings, max_size=8) as pool, connect(settings.nats_url, "sagas") as nc:
        js = nc.jetstream()
        await ensure_stream(js, stream_spec(settings))
        runner = SagaRunner(settings, pool, driver or build_driver(settings))
        with alive("sagas"):
            reporter = asyncio.create_task(report_backends(settings, pool, runner.driver, stop))
            try:
                # Undecodable messages are parked at once; each saga step stands alone
                # (its give-up compensates), so nothing is held behind a failed one.
                gate = ConsumerQuarantine(pool, runner.spec.durable, hold=False)
                async with shared_writer(pool).invalidations(pool):  # steps build on held heads
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
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
                await close_image_service(runner.images)


async def report_backends(
    settings: Settings,
    pool: asyncpg.Pool,
    driver: VolumeDriver,
    stop: asyncio.Event,
    *,
    every: float = 5.0,
) -> None:
    """Capacity of every pool and the service heartbeats, every few seconds (Cinder's
    volume service reports to its scheduler the same way)."""
    host = socket.gethostname()
    while not stop.is_set():
        reports = [
            PoolReport(p.location, p.capacity_gb, p.allocated_gb, p.free_gb, p.multiattach)
            for p in driver.pools()
        ]
        try:
            async with pool.acquire() as conn:
                await report(
                    conn, reports, zone=settings.default_availability_zone, scheduler_host=host
                )
        except (OSError, asyncpg.PostgresError) as err:
            log.warning("backend report failed: %s", err)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
