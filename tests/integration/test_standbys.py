"""Scale-out as deployed: real `cinderblock serve` processes on one database and one stream,
one of them killed with SIGKILL in the middle of a stream of API calls.

- Two relays: one active (the session advisory lock ``relay:<stream>``), one standing by.
  The active one is killed; the standby takes over within seconds, and a consumer of the
  stream sees every event of the log exactly once (distinct ``Nats-Msg-Id``), each
  aggregate's versions in order with no gap.
- Two projectors, the same way (lock ``projector:volumes``): reads keep answering while
  none is active, and the read models end equal to what ``cinderblock verify`` rebuilds
  from the log.
- A projector whose lock session ends while it lives (a PostgreSQL restart, a broken
  connection) stops projecting, and the role is held again by one of the two.
- Two saga workers sharing the durable: one is killed while it holds extends in progress;
  the other resumes them after the ack wait, and every extend completes exactly once (one
  ``Extended`` per ``ExtendRequested``, the volume files of the right size).

Waits are on conditions with deadlines; the only bound asserted is ``TAKEOVER``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import nats
import nats.errors
import nats.js.errors

from cinderblock.drivers.imagefiles import image_name
from cinderblock.replay.verify import verify
from cinderblock.store.mapping import event_name
from tests.helpers.client import CinderClient
from tests.helpers.servers import Servers, fresh_database

T = TypeVar("T")

TAKEOVER = 15.0  # seconds from the SIGKILL to the standby's "active" line ("within seconds")
DEADLINE = 30.0  # seconds any other condition may take
VOLUMES = 4  # volumes written by the relay and projector loads
EXTENDED = 12  # volumes extended at once: more than one worker's 8 concurrent steps
GIB = 1024**3
EXE = str(Path(sys.executable).parent / "cinderblock")


class Service:
    """One `cinderblock serve <name>` process and the JSON lines it has logged so far."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self.killed = False
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    self.lines.append(entry)

    def logged(self, message: str) -> list[dict[str, Any]]:
        """The lines whose message starts with ``message``."""
        return [e for e in self.lines if str(e.get("message", "")).startswith(message)]

    async def until_logged(self, message: str, timeout: float = DEADLINE) -> dict[str, Any]:
        def first() -> Awaitable[dict[str, Any] | None]:
            return _now(next(iter(self.logged(message)), None))

        return await until(first, f"{self.name} logs {message!r}", timeout)

    async def kill(self) -> None:
        """SIGKILL: no drain, no unlock, no goodbye."""
        self.killed = True
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), DEADLINE)

    async def close(self) -> None:
        await asyncio.wait_for(self._reader, DEADLINE)


async def _now(value: T) -> T:
    return value


async def until(
    check: Callable[[], Awaitable[T]], what: str, timeout: float = DEADLINE, every: float = 0.05
) -> T:
    """The first truthy value of ``check``, polled every ``every`` seconds; fails after
    ``timeout`` with the last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}; last: {value!r}")
        await asyncio.sleep(every)


@dataclass
class Fleet:
    """Processes on one fresh database, stream and subject prefix."""

    env: dict[str, str]
    database_url: str
    stream: str
    prefix: str
    data_dir: Path
    services: list[Service]

    async def start(self, name: str, **env: str) -> Service:
        proc = await asyncio.create_subprocess_exec(
            EXE,
            "serve",
            name,
            env={**self.env, **env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 22,
        )
        service = Service(name, proc)
        self.services.append(service)
        return service

    async def client(self, api: Service, session: aiohttp.ClientSession) -> CinderClient:
        listening = await api.until_logged("api listening")
        return CinderClient(session, str(listening["url"]))


@contextlib.asynccontextmanager
async def fleet(servers: Servers, data_dir: Path, **env: str) -> AsyncIterator[Fleet]:
    """Every process still running at the end gets SIGTERM and must exit 0."""
    tag = uuid.uuid4().hex[:8]
    stream = f"S_{tag}"
    async with fresh_database(servers) as url:
        base = {
            **os.environ,
            "CINDERBLOCK_DATABASE_URL": url,
            "CINDERBLOCK_NATS_URL": servers.nats_url,
            "CINDERBLOCK_STREAM": stream,
            "CINDERBLOCK_SUBJECT_PREFIX": f"s{tag}.",
            "CINDERBLOCK_DATA_DIR": str(data_dir),
            "CINDERBLOCK_HOST": "127.0.0.1",
            "CINDERBLOCK_PORT": "0",
            "CINDERBLOCK_LOG_LEVEL": "INFO",
            "CINDERBLOCK_LOG_FORMAT": "json",
            **env,
        }
        running = Fleet(base, url, stream, f"s{tag}.", data_dir, [])
        codes: dict[str, int | None] = {}
        try:
            yield running
        finally:
            left = [s for s in running.services if s.proc.returncode is None]
            for service in left:
                with contextlib.suppress(ProcessLookupError):
                    service.proc.send_signal(signal.SIGTERM)
            for n, service in enumerate(left):
                try:
                    codes[f"{n}:{service.name}"] = await asyncio.wait_for(service.proc.wait(), 30)
                except TimeoutError:
                    service.proc.kill()
                    codes[f"{n}:{service.name}"] = await service.proc.wait()
            for service in running.services:
                await service.close()
            nc = await nats.connect(servers.nats_url)
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(stream)
            await nc.close()
    assert set(codes.values()) <= {0}, codes


async def roles(services: list[Service], active: str) -> tuple[Service, Service]:
    """(the one that logged ``active``, the other), once the other stands by."""

    async def found() -> list[Service]:
        return [s for s in services if s.logged(active)]

    (leader,) = await until(found, f"one of two logs {active!r}")
    (standby,) = (s for s in services if s is not leader)
    await standby.until_logged("standing by")
    assert not standby.logged(active)
    return leader, standby


async def takeover(active: Service, standby: Service, message: str) -> float:
    """Kill the active one; seconds until the standby says it is active."""
    loop = asyncio.get_running_loop()
    killed = loop.time()
    await active.kill()
    await standby.until_logged(message, timeout=TAKEOVER)
    return loop.time() - killed


async def available(client: CinderClient, count: int) -> list[str]:
    vids = [(await client.create_volume(1))["id"] for _ in range(count)]
    for vid in vids:

        async def ready(vid: str = vid) -> bool:
            volume = await client.volume(vid)
            return volume is not None and volume["status"] == "available"

        await until(ready, f"volume {vid} available")
    return vids


class Load:
    """Round after round, on every volume at once: a metadata key and the bootable flag,
    through the API. Every answer must be 200."""

    def __init__(self, client: CinderClient, vids: list[str]) -> None:
        self.client = client
        self.vids = vids
        self.rounds = 0
        self.metadata: dict[str, dict[str, str]] = {vid: {} for vid in vids}
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            n = self.rounds + 1
            await asyncio.gather(*(self._write(vid, n) for vid in self.vids))
            self.rounds = n

    async def _write(self, vid: str, n: int) -> None:
        body = {"metadata": {f"k{n}": str(n)}}
        reply = await self.client.request("POST", f"/volumes/{vid}/metadata", body=body)
        assert reply.status == 200, reply.text
        self.metadata[vid][f"k{n}"] = str(n)
        reply = await self.client.action(vid, {"os-set_bootable": {"bootable": n % 2 == 1}})
        assert reply.status == 200, reply.text

    async def until_rounds(self, rounds: int) -> None:
        async def done() -> bool:
            if self._task.done():
                self._task.result()  # its failure, if it failed
            return self.rounds >= rounds

        await until(done, f"{rounds} rounds of writes")

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self._task, DEADLINE)


async def until_tracked(pool: asyncpg.Pool, name: str) -> None:
    """Until the tracking position ``name`` reaches the log's last event."""

    async def caught_up() -> bool:
        end = await pool.fetchval("SELECT max(position) FROM events")
        at = await pool.fetchval("SELECT position FROM tracking WHERE name = $1", name)
        return at is not None and at >= end

    await until(caught_up, f"{name} at the end of the log")


async def consumed(nats_url: str, stream: str, prefix: str) -> list[str]:
    """Every message's Nats-Msg-Id, in stream order, as an ephemeral consumer sees them."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        total = (await js.stream_info(stream)).state.messages
        sub = await js.pull_subscribe(f"{prefix}>", stream=stream)
        ids: list[str] = []
        async with asyncio.timeout(DEADLINE):
            while len(ids) < total:
                with contextlib.suppress(nats.errors.TimeoutError):
                    for msg in await sub.fetch(256, timeout=1):
                        assert msg.headers is not None
                        ids.append(msg.headers["Nats-Msg-Id"])
        await sub.unsubscribe()
        return ids
    finally:
        await nc.close()


async def test_the_standby_relay_takes_over_and_every_event_is_published_once(
    servers: Servers, tmp_path: Path
) -> None:
    async with fleet(servers, tmp_path) as f, aiohttp.ClientSession() as session:
        api = await f.start("api")
        await f.start("projector")
        await f.start("sagas")
        relays = [await f.start("relay"), await f.start("relay")]
        active, standby = await roles(relays, "relay active")
        client = await f.client(api, session)
        load = Load(client, await available(client, VOLUMES))
        await load.until_rounds(3)
        took = await takeover(active, standby, "relay active")
        await load.until_rounds(load.rounds + 3)  # published by the new relay
        await load.stop()
        pool = await asyncpg.create_pool(f.database_url, min_size=1, max_size=2)
        try:
            await until_tracked(pool, f"relay:{f.stream}")
            rows = await pool.fetch(
                "SELECT originator_id, originator_version FROM events ORDER BY position"
            )
        finally:
            await pool.close()
        ids = await consumed(servers.nats_url, f.stream, f.prefix)

    print(f"relay takeover {took:.2f}s; {len(rows)} events, {load.rounds} rounds")
    logged = [f"{r['originator_id']}:{r['originator_version']}" for r in rows]
    assert [id for id, n in Counter(ids).items() if n > 1] == []
    assert len(ids) == len(logged)
    assert set(ids) == set(logged)
    versions: dict[str, list[int]] = {}
    for msg_id in ids:
        aggregate, _, version = msg_id.rpartition(":")
        versions.setdefault(aggregate, []).append(int(version))
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values()), versions


async def test_the_standby_projector_takes_over_and_the_read_model_matches_a_replay(
    servers: Servers, tmp_path: Path
) -> None:
    reads: list[tuple[float, int]] = []
    stop_reading = asyncio.Event()

    async def read(client: CinderClient, vids: list[str]) -> None:
        loop = asyncio.get_running_loop()
        while not stop_reading.is_set():
            for path in [*(f"/volumes/{vid}" for vid in vids), "/volumes/detail"]:
                reads.append((loop.time(), (await client.request("GET", path)).status))

    async with fleet(servers, tmp_path) as f, aiohttp.ClientSession() as session:
        api = await f.start("api")
        await f.start("relay")
        await f.start("sagas")
        projectors = [await f.start("projector"), await f.start("projector")]
        active, standby = await roles(projectors, "projector active")
        client = await f.client(api, session)
        vids = await available(client, VOLUMES)
        load = Load(client, vids)
        reader = asyncio.get_running_loop().create_task(read(client, vids))
        await load.until_rounds(3)
        killed = asyncio.get_running_loop().time()
        took = await takeover(active, standby, "projector active")
        await load.until_rounds(load.rounds + 3)  # projected by the new projector
        await load.stop()
        stop_reading.set()
        await asyncio.wait_for(reader, DEADLINE)
        pool = await asyncpg.create_pool(f.database_url, min_size=1, max_size=2)
        try:
            await until_tracked(pool, "volumes")
        finally:
            await pool.close()
        verified = await verify(f.database_url, workers=1)
        shown = {vid: await client.volume(vid) for vid in vids}

    print(f"projector takeover {took:.2f}s; {len(reads)} reads, {load.rounds} rounds")
    assert verified.identical, verified.differences
    assert verified.quarantined == []
    assert verified.rebuilt.events > 0
    assert Counter(status for _, status in reads) == {200: len(reads)}
    assert any(killed < at < killed + took for at, _ in reads), "no read while none projected"
    for vid, volume in shown.items():
        assert volume is not None
        assert volume["metadata"] == load.metadata[vid]
        assert volume["bootable"] == ("true" if load.rounds % 2 else "false")


_HOLDER = """
SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
WHERE d.datname = current_database() AND l.locktype = 'advisory' AND l.granted
  AND l.classid::bigint = (hashtext($1)::bigint >> 32) & 4294967295
  AND l.objid::bigint = hashtext($1)::bigint & 4294967295 AND l.objsubid = 1
"""


async def test_a_projector_whose_lock_session_ends_stops_until_it_holds_the_lock_again(
    servers: Servers, tmp_path: Path
) -> None:
    """The active projector lives on but its lock's session is ended (as by a PostgreSQL
    restart or a broken connection): it stops projecting, and the role is held again by
    one of the two (whoever asks first), so they never project at once for long."""
    role = "projector:volumes"
    async with fleet(servers, tmp_path) as f, aiohttp.ClientSession() as session:
        api = await f.start("api")
        await f.start("relay")
        await f.start("sagas")
        projectors = [await f.start("projector"), await f.start("projector")]
        active, standby = await roles(projectors, "projector active")
        client = await f.client(api, session)
        vids = await available(client, VOLUMES)
        load = Load(client, vids)
        await load.until_rounds(3)
        pool = await asyncpg.create_pool(f.database_url, min_size=1, max_size=2)
        try:
            (holder,) = await pool.fetch(_HOLDER, role)
            assert await pool.fetchval("SELECT pg_terminate_backend($1)", holder["pid"])
            await active.until_logged("lost the lock", timeout=TAKEOVER)

            async def held_again() -> list[int]:
                return [r["pid"] for r in await pool.fetch(_HOLDER, role)]

            holders = await until(held_again, "the role held again", TAKEOVER)
            await load.until_rounds(load.rounds + 3)
            await load.stop()
            await until_tracked(pool, "volumes")
        finally:
            await pool.close()
        verified = await verify(f.database_url, workers=1)
        shown = {vid: await client.volume(vid) for vid in vids}

    again = "the standby" if standby.logged("projector active") else "the old holder"
    print(f"lock session ended: {again} holds the role again")
    assert len(holders) == 1
    assert holders != [holder["pid"]]
    # Active once more in all: the old holder again, or the standby.
    assert len(active.logged("projector active")) + len(standby.logged("projector active")) == 2
    assert verified.identical, verified.differences
    for vid, volume in shown.items():
        assert volume is not None
        assert volume["metadata"] == load.metadata[vid]


async def test_a_killed_saga_worker_s_extends_complete_once_on_the_other(
    servers: Servers, tmp_path: Path
) -> None:
    # Each extend's driver step takes a while, so the killed worker surely holds some: a
    # worker runs at most 8 steps at once and EXTENDED are delivered together.
    sagas_env = {"CINDERBLOCK_INJECT": "extend=delay:1.5", "CINDERBLOCK_SAGA_ACK_WAIT": "2"}
    async with (
        fleet(servers, tmp_path, CINDERBLOCK_QUOTA_VOLUMES="50") as f,
        aiohttp.ClientSession() as session,
    ):
        api = await f.start("api")
        await f.start("relay")
        await f.start("projector")
        workers = [await f.start("sagas", **sagas_env), await f.start("sagas", **sagas_env)]
        client = await f.client(api, session)
        vids = await available(client, EXTENDED)
        nc = await nats.connect(servers.nats_url)
        try:
            js = nc.jetstream()
            durable = f"{f.prefix.replace('.', '-')}sagas"
            before = (await js.consumer_info(f.stream, durable)).delivered.consumer_seq

            async def delivered() -> bool:
                info = await js.consumer_info(f.stream, durable)
                return info.delivered.consumer_seq >= before + EXTENDED

            for size in (2, 3):
                replies = await asyncio.gather(
                    *(client.action(vid, {"os-extend": {"new_size": size}}) for vid in vids)
                )
                assert [r.status for r in replies] == [202] * EXTENDED, replies
                if size == 2:  # mid-load: every extend delivered, none finished
                    await until(delivered, f"{EXTENDED} extends delivered")
                    await workers[0].kill()
                for vid in vids:

                    async def grown(vid: str = vid, size: int = size) -> bool:
                        volume = await client.volume(vid)
                        return volume is not None and (volume["status"], volume["size"]) == (
                            "available",
                            size,
                        )

                    await until(grown, f"volume {vid} extended to {size}")
        finally:
            await nc.close()
        pool = await asyncpg.create_pool(f.database_url, min_size=1, max_size=2)
        try:
            rows = await pool.fetch(
                "SELECT originator_id::text AS vid, topic FROM events "
                "WHERE originator_id = ANY($1::uuid[])",
                vids,
            )
        finally:
            await pool.close()
        resumed = workers[1].logged("resuming volume.extend_requested")

    print(f"the surviving worker resumed {len(resumed)} extends")
    assert resumed, "the killed worker held no extend"
    names: dict[str, Counter[str]] = {vid: Counter() for vid in vids}
    for r in rows:
        names[r["vid"]][event_name(r["topic"]).rpartition(".")[2]] += 1
    for vid, counted in names.items():
        assert (counted["ExtendRequested"], counted["Extended"]) == (2, 2), (vid, counted)
        assert counted["ExtendFailed"] == 0, (vid, counted)
        (image,) = (tmp_path / "volumes").rglob(image_name(vid))
        assert image.stat().st_size == 3 * GIB
