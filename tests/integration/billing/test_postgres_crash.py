"""Billing's ledger survives a PostgreSQL crash right after billing acked its messages.

Billing acks a batch once its ledger change is committed, and the ack ends the messages'
redelivery: a commit that did not wait for the WAL flush (``synchronous_commit = off``)
could vanish in a crash after the ack, and nothing would ever write it again. The chaos
suite's PostgreSQL kill once left a deleted volume's interval open that way.

A PostgreSQL of its own (the embedded server, killed with SIGKILL), its WAL writer slowed to
10 s so that an unflushed commit is lost for sure; JetStream from the session's servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import nats
import pytest

from cinderblock.billing.run import notification_stream
from cinderblock.billing.run import run as run_billing
from cinderblock.bus.jetstream import ensure_stream
from cinderblock.cli.embedded import EmbeddedPostgres
from cinderblock.relay.run import Relay
from cinderblock.runtime.infra import create_schemas
from cinderblock.runtime.streams import stream_spec
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.volumes import Volumes
from tests.helpers.events import new_volume
from tests.helpers.servers import Servers, make_settings

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def _own_postgres() -> AsyncIterator[tuple[EmbeddedPostgres, str]]:
    # A short path under /tmp: the server's socket lives in it (AF_UNIX ~107 bytes).
    root = Path(tempfile.mkdtemp(prefix="cb-crash-", dir="/tmp"))
    postgres = EmbeddedPostgres(root)
    try:
        dsn = await asyncio.to_thread(postgres.start)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()
        yield postgres, dsn
    finally:
        await asyncio.to_thread(postgres.stop)
        shutil.rmtree(root, ignore_errors=True)


async def _crash(postgres: EmbeddedPostgres) -> None:
    pid = postgres.postmaster_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    async with asyncio.timeout(10):
        while postgres.server_processes():  # noqa: ASYNC110 - no event tells of an exit
            await asyncio.sleep(0.02)


async def test_ledger_acked_before_a_crash_is_still_there_after_it(
    servers: Servers, data_dir: Path
) -> None:
    async with _own_postgres() as (postgres, dsn):
        settings = make_settings(dsn, servers.nats_url, f"C{uuid.uuid4().hex[:8]}", data_dir)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        await create_schemas(pool)
        nc = await nats.connect(servers.nats_url)
        js = nc.jetstream()
        await ensure_stream(js, stream_spec(settings))
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(Relay(settings, pool, js).follow(stop)),
            asyncio.create_task(run_billing(settings, stop=stop)),
        ]
        try:
            volumes = Volumes(AsyncEventStore(pool))
            volume = new_volume("p1")
            volume.complete_create("node@file-a#pool0")
            await volumes.store.save(volume, meta={"request_id": "req-crash"})
            volume.request_delete()
            volume.complete_delete()
            await volumes.store.save(volume, meta={"request_id": "req-crash"})

            applied = "SELECT version FROM billing_volumes WHERE volume_id = $1"
            async with asyncio.timeout(20):
                # Billing's commit notifies nobody: its row is read until it is there.
                while await pool.fetchval(applied, volume.id) != volume.version:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            # Billing has committed the deletion's change and is acking its messages.
            await _crash(postgres)
            pool.terminate()
            await asyncio.to_thread(postgres.start)

            conn = await asyncpg.connect(dsn)
            try:
                assert await conn.fetchval(applied, volume.id) == volume.version
                open_ = await conn.fetchval(
                    "SELECT count(*) FROM billing_intervals "
                    "WHERE volume_id = $1 AND ended_at IS NULL",
                    volume.id,
                )
                assert open_ == 0
            finally:
                await conn.close()
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
            for name in (settings.stream, notification_stream(settings).name):
                with contextlib.suppress(Exception):
                    await js.delete_stream(name)
            await nc.close()
            pool.terminate()
