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
from cinderblock.relay.run import Relay
from cinderblock.runtime.streams import stream_spec
from cinderblock.store.eventstore import AsyncEventStore, RecordedEvent
from tests.integration.test_store import new_volume


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
