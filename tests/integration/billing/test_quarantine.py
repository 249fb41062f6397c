"""One volume whose events the billing fold cannot take does not block billing: in the same
batch the other volume is billed, the poison one is parked and quarantined, its later
messages are held unhandled; `replay --projection billing` (the ledger in replay's pass) is
not stopped
by it either, and releases it once the event folds."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import asyncpg
import nats
import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from cinderblock.billing.run import Billing, Publisher, notification_stream
from cinderblock.bus.jetstream import ensure_stream, run_consumer
from cinderblock.config.settings import Settings
from cinderblock.relay.run import Relay
from cinderblock.replay.rebuild import replay
from cinderblock.runtime.infra import create_schemas
from cinderblock.runtime.streams import stream_spec
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.mapping import make_mapper
from tests.helpers.events import append_raw, new_volume
from tests.helpers.quarantine import Wakes, WatchedQuarantine
from tests.helpers.servers import Servers, fresh_database, make_settings

pytestmark = pytest.mark.integration


class WatchedBilling(Billing):
    wake: Wakes

    async def handle(self, msg: Msg) -> None:
        try:
            await super().handle(msg)
        finally:
            self.wake()

    async def after(self) -> None:  # a batch's ledger changes are written here
        try:
            await super().after()
        finally:
            self.wake()


@pytest_asyncio.fixture(loop_scope="session")
async def setup(
    servers: Servers, data_dir
) -> AsyncIterator[tuple[Settings, asyncpg.Pool, WatchedBilling]]:  # type: ignore[no-untyped-def]
    async with fresh_database(servers) as dsn:
        settings = make_settings(dsn, servers.nats_url, f"BQ{uuid.uuid4().hex[:8]}", data_dir)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=6)
        await create_schemas(pool)
        nc = await nats.connect(servers.nats_url)
        js = nc.jetstream()
        await ensure_stream(js, stream_spec(settings))
        await ensure_stream(js, notification_stream(settings))
        billing = WatchedBilling(settings, pool, Publisher(settings, js))
        billing.wake = Wakes()
        billing.spec = dataclasses.replace(billing.spec, max_deliver=2)
        billing.gate = WatchedQuarantine(pool, billing.spec.durable, billing.wake)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(Relay(settings, pool, js).follow(stop)),
            asyncio.create_task(
                run_consumer(
                    js, billing.spec, billing.handle, billing.park, stop, billing, billing.gate
                )
            ),
        ]
        try:
            yield settings, pool, billing
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            for name in (settings.stream, notification_stream(settings).name):
                with contextlib.suppress(Exception):
                    await js.delete_stream(name)
            await nc.close()
            await pool.close()


async def test_a_volume_the_fold_cannot_take_is_set_aside_and_billing_goes_on(
    setup: tuple[Settings, asyncpg.Pool, WatchedBilling],
) -> None:
    settings, pool, billing = setup
    store = AsyncEventStore(pool)
    poison = new_volume()
    poison.complete_create("h@b#p")
    poison.set_bootable(True)
    poison.set_bootable(False)
    state = make_mapper().to_stored_event(poison.pending_events[2]).state
    # v3 lost its field: the relay publishes it, billing's fold raises on it every time.
    await append_raw(pool, poison, {3: state.split(b',"bootable"')[0] + b"}"})
    good = new_volume()
    good.complete_create("h@b#p")
    await store.save(good, meta={})
    durable = billing.spec.durable

    async def ledger_version(volume_id: uuid.UUID) -> int | None:
        found: int | None = await pool.fetchval(
            "SELECT version FROM billing_volumes WHERE volume_id = $1", volume_id
        )
        return found

    async def settled() -> bool:
        held = await pool.fetchval(
            "SELECT count(*) FROM quarantine WHERE consumer = $1 AND held", durable
        )
        return held == 1 and await ledger_version(good.id) == 2

    await billing.wake.until(settled)
    rows = await pool.fetch(
        "SELECT aggregate_id, version, held, error FROM quarantine WHERE consumer = $1 "
        "ORDER BY version",
        durable,
    )
    assert [(r["aggregate_id"], r["version"], r["held"]) for r in rows] == [
        (poison.id, 3, False),
        (poison.id, 4, True),
    ]
    assert "TypeError" in rows[0]["error"]
    assert await ledger_version(poison.id) == 2  # as the event before left it
    letters = await pool.fetch("SELECT msg_id FROM dead_letters WHERE consumer = $1", durable)
    assert f"{poison.id}:3" in {r["msg_id"] for r in letters}  # (v4 too if it gave up first)

    # The rebuild is not stopped by it and finds the same.
    report = (await replay(settings.database_url, (), ledger=durable)).ledger
    assert report is not None
    assert report.quarantined == 1
    assert await ledger_version(poison.id) == 2
    assert await ledger_version(good.id) == 2
    assert [
        (r["version"], r["held"])
        for r in await pool.fetch(
            "SELECT version, held FROM quarantine WHERE consumer = $1 ORDER BY version", durable
        )
    ] == [(3, False), (4, True)]

    # Once the event folds (here: rewritten as it should have been), it releases the volume.
    await pool.execute(
        "UPDATE events SET state = $2 WHERE originator_id = $1 AND originator_version = 3",
        poison.id,
        state,
    )
    report = (await replay(settings.database_url, (), ledger=durable)).ledger
    assert report is not None
    assert report.quarantined == 0
    assert await ledger_version(poison.id) == 4
    assert await pool.fetchval("SELECT count(*) FROM quarantine WHERE consumer = $1", durable) == 0
