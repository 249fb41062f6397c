"""The relay publishes every event to JetStream exactly once in effect, also when it dies
after publishing and before recording its position."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence

import asyncpg
import nats
from nats.js.api import StreamInfo

from cinderblock.bus.jetstream import ensure_stream
from cinderblock.config.settings import Settings
from cinderblock.domain.volume import Volume
from cinderblock.relay.run import Relay
from cinderblock.runtime.infra import create_schemas
from cinderblock.runtime.streams import stream_spec
from cinderblock.store.eventstore import AsyncEventStore, RecordedEvent
from cinderblock.store.mapping import make_mapper
from tests.helpers.events import FIELDS, append_raw, new_volume
from tests.helpers.servers import Servers, fresh_database


async def subject_counts(js, settings: Settings, volume_id: uuid.UUID) -> dict[str, int]:  # type: ignore[no-untyped-def]
    info: StreamInfo = await js.stream_info(
        settings.stream, subjects_filter=settings.subject(f"volume.events.*.{volume_id}")
    )
    return dict(info.state.subjects or {})


async def test_relay_killed_between_publish_and_record_publishes_once(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    tag = uuid.uuid4().hex[:8]
    own = settings.model_copy(
        update={"stream": f"{settings.stream}_R{tag}", "subject_prefix": f"r{tag}."}
    )
    store = AsyncEventStore(pool)
    volume = new_volume()
    volume.complete_create("h@b#p")
    volume.set_bootable(True)
    await store.save(volume, meta={"request_id": "req-relay"})

    nc = await nats.connect(own.nats_url)
    js = nc.jetstream()
    await ensure_stream(js, stream_spec(own))
    published = asyncio.Event()

    async def die_after_publish(batch: Sequence[RecordedEvent]) -> None:
        if any(r.originator_id == volume.id for r in batch):
            published.set()
            await asyncio.Event().wait()  # hang here until killed: position never recorded

    stop = asyncio.Event()
    first = asyncio.create_task(Relay(own, pool, js, after_publish=die_after_publish).follow(stop))
    await asyncio.wait_for(published.wait(), 15)
    first.cancel()  # the kill
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert sum((await subject_counts(js, own, volume.id)).values()) == 3

    second = Relay(own, pool, js)
    stop2 = asyncio.Event()
    task = asyncio.create_task(second.follow(stop2))
    try:

        async def caught_up() -> bool:
            row = await pool.fetchrow(
                "SELECT position FROM tracking WHERE name = $1", f"relay:{own.stream}"
            )
            return row is not None and row["position"] >= max(
                r
                for r in [
                    await pool.fetchval(
                        "SELECT max(position) FROM events WHERE originator_id = $1", volume.id
                    )
                ]
            )

        for _ in range(1500):
            if await caught_up():
                break
            await asyncio.sleep(0.01)
        assert await caught_up()
    finally:
        stop2.set()
        await asyncio.wait_for(task, 10)
    counts = await subject_counts(js, own, volume.id)
    assert sorted(counts) == sorted(
        own.subject(f"volume.events.{name}.{volume.id}")
        for name in ("Created", "CreateCompleted", "BootableSet")
    )
    assert set(counts.values()) == {1}  # republished, de-duplicated by Nats-Msg-Id
    msg = await js.get_last_msg(own.stream, own.subject(f"volume.events.BootableSet.{volume.id}"))
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == f"{volume.id}:3"
    await js.delete_stream(own.stream)
    await nc.close()


async def _until_relayed(pool: asyncpg.Pool, name: str) -> None:
    """Until the relay's position reaches the last committed event."""
    end = await pool.fetchval("SELECT max(position) FROM events")
    for _ in range(2000):
        row = await pool.fetchrow("SELECT position FROM tracking WHERE name = $1", name)
        if row is not None and row["position"] >= end:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the relay did not get to the end of the log")


async def test_an_event_the_relay_cannot_publish_is_set_aside_with_its_volume(
    servers: Servers, settings: Settings
) -> None:
    tag = uuid.uuid4().hex[:8]
    own = settings.model_copy(
        update={"stream": f"{settings.stream}_Q{tag}", "subject_prefix": f"q{tag}."}
    )
    name = f"relay:{own.stream}"
    async with fresh_database(servers) as dsn:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        await create_schemas(pool)
        nc = await nats.connect(own.nats_url)
        js = nc.jetstream()
        await ensure_stream(js, stream_spec(own))
        store = AsyncEventStore(pool)
        try:
            undecodable = new_volume()
            undecodable.complete_create("h@b#p")
            undecodable.set_bootable(True)
            undecodable_state = make_mapper().to_stored_event(undecodable.pending_events[1]).state
            await append_raw(pool, undecodable, {2: b"not json"})
            too_large = Volume.create(
                uuid.uuid4(), project_id="p", **{**FIELDS, "metadata": {"k": "x" * 2_000_000}}
            )
            await store.save(too_large, meta={})
            good = new_volume()
            good.complete_create("h@b#p")
            await store.save(good, meta={})

            stop = asyncio.Event()
            relay = asyncio.create_task(Relay(own, pool, js).follow(stop))
            await _until_relayed(pool, name)
            assert len(await subject_counts(js, own, good.id)) == 2  # everything else flows
            assert list(await subject_counts(js, own, undecodable.id)) == [
                own.subject(f"volume.events.Created.{undecodable.id}")
            ]
            assert await subject_counts(js, own, too_large.id) == {}
            rows = await pool.fetch(
                "SELECT aggregate_id, version, held, error, position FROM quarantine "
                "WHERE consumer = $1 ORDER BY aggregate_id = $2, version",
                name,
                too_large.id,
            )
            assert [(r["aggregate_id"], r["version"], r["held"]) for r in rows] == [
                (undecodable.id, 2, False),
                (undecodable.id, 3, True),
                (too_large.id, 1, False),
            ]
            assert "UnpublishableError" in rows[2]["error"]
            assert all(r["position"] is not None for r in rows)

            # A relay that starts again (a fixed version) publishes what now can be.
            stop.set()
            await asyncio.wait_for(relay, 10)
            await pool.execute(
                "UPDATE events SET state = $2 WHERE originator_id = $1 AND originator_version = 2",
                undecodable.id,
                undecodable_state,
            )
            again = Relay(own, pool, js)
            await again.retry_set_aside()
            assert len(await subject_counts(js, own, undecodable.id)) == 3
            assert await pool.fetchval(
                "SELECT array_agg(aggregate_id) FROM quarantine WHERE consumer = $1", name
            ) == [too_large.id]
            assert again.stopped == {too_large.id: 1}
        finally:
            with contextlib.suppress(Exception):
                await js.delete_stream(own.stream)
            await nc.close()
            await pool.close()
