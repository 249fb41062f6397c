"""No event stops the projector: an event the projection cannot apply (a U+0000 that
PostgreSQL cannot store, undecodable bytes) quarantines its aggregate, whose later events
are held, while every other aggregate is projected and the tracking position moves on.
Visible in the quarantine table, the logs, /healthcheck and verify; a replay records the
same quarantine, and clears it once the event applies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from cinderblock.api.app import create_app
from cinderblock.domain.volume import Volume
from cinderblock.projector.run import NAME, Projector
from cinderblock.readmodels.quarantine import listing
from cinderblock.readmodels.steps import STEPS
from cinderblock.replay.rebuild import TooManyQuarantinedError, replay
from cinderblock.replay.verify import verify
from cinderblock.runtime.infra import create_schemas
from cinderblock.runtime.leadership import leadership
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.mapping import make_mapper
from tests.helpers.events import append_raw, new_volume
from tests.helpers.servers import Projected, Servers, fresh_database, listening, make_settings

pytestmark = pytest.mark.integration

NUL_KEY = "fuzz_key\x00"


@dataclass
class Live:
    dsn: str
    pool: asyncpg.Pool
    store: AsyncEventStore
    projected: Projected

    async def log_end(self) -> tuple[int, int]:
        """The last committed event (the projector gets there once it is settled)."""
        row = await self.pool.fetchrow(
            "SELECT tx_id::text::bigint AS tx, position FROM events "
            "ORDER BY tx_id DESC, position DESC LIMIT 1"
        )
        return (row["tx"], row["position"])

    async def tracked(self) -> tuple[int, int]:
        row = await self.pool.fetchrow("SELECT tx_id, position FROM tracking WHERE name = $1", NAME)
        return (row["tx_id"], row["position"]) if row else (0, 0)

    async def caught_up(self) -> None:
        end = await self.log_end()

        async def there() -> bool:
            return await self.tracked() >= end

        await self.projected.until(there)

    async def row(self, volume_id: uuid.UUID) -> dict:  # type: ignore[type-arg]
        row = await self.pool.fetchrow("SELECT * FROM volumes WHERE id = $1", volume_id)
        assert row is not None
        return dict(row)

    async def set_aside(self, volume_id: uuid.UUID) -> list[tuple[int, str, bool]]:
        rows = await self.pool.fetch(
            "SELECT version, event_name, held FROM quarantine "
            "WHERE consumer = $1 AND aggregate_id = $2 ORDER BY version",
            NAME,
            volume_id,
        )
        return [(r["version"], r["event_name"], r["held"]) for r in rows]


@pytest_asyncio.fixture(loop_scope="session")
async def live(servers: Servers) -> AsyncIterator[Live]:
    """A database of its own (replay swaps whole tables) with the projector running."""
    async with fresh_database(servers) as dsn:
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=8)
        await create_schemas(pool)
        stop = asyncio.Event()

        async def project() -> None:
            async with leadership(pool, f"projector:{NAME}", stop) as leader:
                assert leader
                await Projector(pool).follow(stop)

        task = asyncio.create_task(project())
        try:
            async with listening(pool) as projected:
                yield Live(dsn, pool, AsyncEventStore(pool), projected)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            await pool.close()


async def _available(store: AsyncEventStore) -> Volume:
    volume = new_volume()
    volume.complete_create("h@b#p")
    await store.save(volume, meta={})
    return volume


async def test_an_unstorable_string_quarantines_its_volume_only(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cinderblock.readmodels.quarantine")
    bad = await _available(live.store)
    bad.set_image_metadata({NUL_KEY: "fuzz-value"})  # appended directly: the API refuses it
    bad.set_bootable(True)
    await live.store.save(bad, meta={})
    good = await _available(live.store)
    good.set_bootable(True)
    await live.store.save(good, meta={})
    await live.caught_up()

    assert (await live.row(good.id))["bootable"] is True
    stuck = await live.row(bad.id)
    assert (stuck["version"], stuck["image_metadata"], stuck["bootable"]) == (2, "{}", False)
    assert await live.set_aside(bad.id) == [
        (3, "Volume.ImageMetadataSet", False),
        (4, "Volume.BootableSet", True),
    ]
    [entry] = [q for q in await listing(live.pool) if q.aggregate_id == bad.id]
    assert "UntranslatableCharacterError" in entry.error
    assert entry.position is not None
    assert entry.held == 1

    failed = [r for r in caplog.records if getattr(r, "held", None) is False]
    assert [
        (r.consumer, r.volume_id, r.event, r.version, r.position)
        for r in failed  # type: ignore[attr-defined]
    ] == [(NAME, str(bad.id), "Volume.ImageMetadataSet", 3, entry.position)]
    assert "UntranslatableCharacterError" in failed[0].error  # type: ignore[attr-defined]

    # Later events of the quarantined volume wait behind it; everything else flows.
    bad.set_bootable(False)
    await live.store.save(bad, meta={})
    other = await _available(live.store)
    await live.caught_up()
    assert (await live.row(other.id))["status"] == "available"
    assert (await live.set_aside(bad.id))[-1] == (5, "Volume.BootableSet", True)
    assert (await live.row(bad.id))["version"] == 2


async def test_an_undecodable_event_quarantines_its_volume(live: Live) -> None:
    bad = await _available(live.store)
    bad.set_bootable(True)
    bad.set_bootable(False)
    await append_raw(live.pool, bad, {3: b"not json"})
    good = await _available(live.store)
    await live.caught_up()
    assert (await live.row(good.id))["status"] == "available"
    assert await live.set_aside(bad.id) == [
        (3, "Volume.BootableSet", False),
        (4, "Volume.BootableSet", True),
    ]
    assert (await live.row(bad.id))["version"] == 2


async def test_healthcheck_reports_degraded_while_serving(
    live: Live, servers: Servers, data_dir: Path
) -> None:
    settings = make_settings(live.dsn, servers.nats_url, uuid.uuid4().hex[:8], data_dir)
    async with TestClient(TestServer(create_app(settings))) as client:
        healthy = await client.get("/healthcheck")
        assert (healthy.status, await healthy.text()) == (200, "OK")
        bad = await _available(live.store)
        bad.set_image_metadata({NUL_KEY: "x"})
        await live.store.save(bad, meta={})
        await live.caught_up()
        degraded = await client.get("/healthcheck")
        assert degraded.status == 200  # everything else is served
        assert (await degraded.text()).startswith(f"DEGRADED: quarantined aggregates ({NAME} 1)")
        as_json = await client.get("/healthcheck", headers={"Accept": "application/json"})
        assert (await as_json.json())["reasons"][0].startswith("DEGRADED")
        assert (await client.head("/healthcheck")).status == 204


def _missing_field(state: bytes) -> bytes:
    return state.split(b',"metadata"')[0] + b"}"


BROKEN = {
    "unstorable": lambda state: state.replace(b'"k"', b'"k\\u0000"'),
    "undecodable": lambda state: b"not json",
    "missing field": _missing_field,
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
async def test_replay_quarantines_the_same_and_clears_it_once_the_event_applies(
    live: Live, broken: str
) -> None:
    bad = await _available(live.store)
    bad.set_image_metadata({"k": "v"})
    bad.set_bootable(True)
    good_state = make_mapper().to_stored_event(bad.pending_events[0]).state
    await append_raw(live.pool, bad, {3: BROKEN[broken](good_state)})
    good = await _available(live.store)
    await live.caught_up()
    assert await live.set_aside(bad.id) == [
        (3, "Volume.ImageMetadataSet", False),
        (4, "Volume.BootableSet", True),
    ]

    checked = await verify(live.dsn, workers=2 if broken == "unstorable" else 1)
    assert checked.identical, checked.differences  # the rebuild stops the volume there too
    [entry] = checked.quarantined
    assert (entry.aggregate_id, entry.version) == (bad.id, 3)
    assert checked.replay_would(entry) == "quarantine it again"
    assert checked.rebuilt.quarantined == 1

    done = await replay(live.dsn)  # not stopped by the event either
    assert done.swapped
    assert done.quarantined == 1
    assert await live.set_aside(bad.id) == [
        (3, "Volume.ImageMetadataSet", False),
        (4, "Volume.BootableSet", True),
    ]
    assert (await live.row(bad.id))["version"] == 2
    assert (await live.row(good.id))["status"] == "available"

    # A fixed version (here: the event rewritten as it should have been) replays it.
    await live.pool.execute(
        "UPDATE events SET state = $3 WHERE originator_id = $1 AND originator_version = $2",
        bad.id,
        3,
        good_state,
    )
    checked = await verify(live.dsn)
    assert not checked.identical
    assert {d.key for d in checked.differences} == {str(bad.id)}
    assert checked.replay_would(checked.quarantined[0]) == "apply it"
    done = await replay(live.dsn)
    assert done.quarantined == 0
    assert await live.set_aside(bad.id) == []
    row = await live.row(bad.id)
    assert (row["version"], row["bootable"], row["image_metadata"]) == (4, True, '{"k": "v"}')

    # The live projector applies the volume's next events again.
    store = AsyncEventStore(live.pool)  # knows nothing of the rows appended by hand
    fixed = await store.load(bad.id, Volume)
    assert fixed is not None
    fixed.set_bootable(False)
    await store.save(fixed, meta={})
    await live.caught_up()
    assert ((await live.row(bad.id))["version"], await live.set_aside(bad.id)) == (5, [])
    assert (await verify(live.dsn)).identical


async def test_a_replay_that_quarantines_many_is_not_swapped_in(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Broken code looks like every event being bad: such a rebuild is refused."""
    volumes = []
    for _ in range(3):
        volume = await _available(live.store)
        volume.set_bootable(True)
        await live.store.save(volume, meta={})
        volumes.append(volume)
    await live.caught_up()

    def broken(row: dict, e: object) -> None:  # type: ignore[type-arg]
        raise KeyError("bootable")

    [step] = STEPS["Volume.BootableSet"]
    monkeypatch.setitem(STEPS, "Volume.BootableSet", (dataclasses.replace(step, change=broken),))
    with pytest.raises(TooManyQuarantinedError):
        await replay(live.dsn, max_new_quarantined=2)
    assert [(await live.row(v.id))["bootable"] for v in volumes] == [True, True, True]
    assert await live.pool.fetchval("SELECT count(*) FROM quarantine") == 0
