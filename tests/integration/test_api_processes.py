"""Several api processes on one database and one port, as `cinderblock dev` and
`cinderblock serve api --workers N` run them.

Each api process keeps the newest state of every aggregate it writes (the writer's heads,
`cinderblock.store.writer`); a write made by another process must show in it, so writing
one volume from two processes in turn is answered 2xx every time (no 409, no 500), each
process reads the other's writes, and the log stays one gap-free history. Several api
processes bind one port with SO_REUSEPORT and the kernel spreads connections over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from cinderblock.cli.processes import claim_port
from cinderblock.config.settings import SettingsError
from cinderblock.domain.volume import Volume
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.mapping import event_name
from tests.helpers.processes import serving
from tests.helpers.servers import Servers

ROUNDS = 6  # turns of the two processes writing the volume one after the other
TOGETHER = 8  # metadata updates sent by each process at the same time
HOST = "127.0.0.1"


class Api:
    """One api process, called directly at its own URL."""

    def __init__(self, session: aiohttp.ClientSession, url: str, project: str) -> None:
        self.session = session
        self.base = f"{url}/v3/{project}"
        self.headers = {"X-Auth-Token": f"admin:{project}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base + path, json=body, headers=self.headers
        ) as resp:
            data = await resp.json() if resp.content_length != 0 else None
            return resp.status, data

    async def action(self, vid: str, body: dict[str, Any]) -> int:
        status, answer = await self.call("POST", f"/volumes/{vid}/action", body)
        assert status in (200, 202), (body, status, answer)
        return status

    async def until(self, vid: str, **fields: Any) -> dict[str, Any]:
        """The volume as this process shows it once every field has the given value."""
        volume: dict[str, Any] = {}
        try:
            async with asyncio.timeout(30):
                while True:
                    status, body = await self.call("GET", f"/volumes/{vid}")
                    assert status == 200, body
                    volume = body["volume"]
                    if all(volume[k] == v for k, v in fields.items()):
                        return volume
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"never {fields}: {volume}") from None


async def history(database_url: str, vid: str) -> tuple[list[int], Counter[str], Volume]:
    """The volume's versions and event names in the log, and its state replayed from it."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        rows = await pool.fetch(
            "SELECT originator_version, topic FROM events WHERE originator_id = $1 "
            "ORDER BY originator_version",
            uuid.UUID(vid),
        )
        volume = await AsyncEventStore(pool).load(uuid.UUID(vid), Volume)
    finally:
        await pool.close()
    assert volume is not None
    names = Counter(event_name(r["topic"]).rpartition(".")[2] for r in rows)
    return [r["originator_version"] for r in rows], names, volume


async def test_two_api_processes_write_one_volume_in_turn(servers: Servers, tmp_path: Path) -> None:
    services = ("api", "api", "relay", "projector", "sagas")
    async with (
        serving(servers, tmp_path, services) as deployed,
        aiohttp.ClientSession() as session,
    ):
        project = uuid.uuid4().hex
        a, b = (Api(session, url, project) for url in deployed.api_urls)
        status, body = await a.call("POST", "/volumes", {"volume": {"size": 1}})
        assert status == 202, body
        vid = body["volume"]["id"]
        await b.until(vid, status="available")

        metadata: dict[str, str] = {}
        for turn in range(1, ROUNDS + 1):
            one, other = (a, b) if turn % 2 else (b, a)
            bootable = "true" if turn % 2 else "false"
            assert await one.action(vid, {"os-set_bootable": {"bootable": bootable}}) == 200
            await other.until(vid, bootable=bootable)
            # The other process writes on top of what it has just read of the first's write.
            status, body = await other.call(
                "POST", f"/volumes/{vid}/metadata", {"metadata": {f"turn{turn}": str(turn)}}
            )
            metadata[f"turn{turn}"] = str(turn)
            assert (status, body) == (200, {"metadata": metadata})
            await one.until(vid, metadata=metadata)
            assert await one.action(vid, {"os-extend": {"new_size": turn + 1}}) == 202
            await other.until(vid, status="available", size=turn + 1)

        # Both at once, distinct keys: conflicts between the processes are retried, never
        # answered, and no update is lost.
        calls = [
            api.call("POST", f"/volumes/{vid}/metadata", {"metadata": {f"{name}{i}": "x"}})
            for i in range(TOGETHER)
            for api, name in ((a, "a"), (b, "b"))
        ]
        answers = await asyncio.gather(*calls)
        assert [status for status, _ in answers] == [200] * len(calls), answers
        metadata |= {f"{name}{i}": "x" for i in range(TOGETHER) for name in "ab"}
        shown = [await api.until(vid, metadata=metadata) for api in (a, b)]
        versions, names, replayed = await history(deployed.database_url, vid)

    assert versions == list(range(1, len(versions) + 1))
    assert names["BootableSet"] == ROUNDS
    assert names["Updated"] == ROUNDS + 2 * TOGETHER
    assert names["ExtendRequested"] == names["Extended"] == ROUNDS
    assert (replayed.size_gb, replayed.bootable, replayed.metadata) == (
        ROUNDS + 1,
        ROUNDS % 2 == 1,
        metadata,
    )
    for volume in shown:
        assert (volume["size"], volume["bootable"], volume["status"]) == (
            ROUNDS + 1,
            "true" if ROUNDS % 2 else "false",
            "available",
        )


def sockets_on(port: int) -> dict[int, Counter[str]]:
    """Per process: its TCP sockets on local ``port`` by state (``listen``, ``established``)."""
    states = {"0A": "listen", "01": "established"}
    by_inode: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] in states:
                    by_inode[fields[9]] = states[fields[3]]
    found: dict[int, Counter[str]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        inodes = [link[8:-1] for link in links if link.startswith("socket:[")]
        counts = Counter(by_inode[i] for i in inodes if i in by_inode)
        if counts:
            found[int(pid)] = counts
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def until_sockets(port: int, check: Any) -> dict[int, Counter[str]]:
    async with asyncio.timeout(30):
        while True:
            found = await asyncio.to_thread(sockets_on, port)
            if check(found):
                return found
            await asyncio.sleep(0.05)


async def test_two_api_processes_share_one_port(servers: Servers, tmp_path: Path) -> None:
    port = claim_port(HOST, 0)
    async with serving(servers, tmp_path, ("api", "api"), port=port) as deployed:
        assert deployed.api_urls == [f"http://{HOST}:{port}"] * 2
        listening = await until_sockets(port, lambda f: len(f) == 2)
        assert all(c["listen"] == 1 for c in listening.values())
        # New connections are spread over both processes by the kernel.
        connections = [await asyncio.open_connection(HOST, port) for _ in range(32)]
        try:
            accepted = await until_sockets(
                port, lambda f: sum(c["established"] for c in f.values()) >= 32
            )
            servers_of = {pid: c["established"] for pid, c in accepted.items() if c["listen"]}
            assert set(servers_of) == set(listening)
            assert all(n > 0 for n in servers_of.values()), servers_of
        finally:
            for _, writer in connections:
                writer.close()
        # One of them stops (and exits 0); the port is still served, by the other.
        first, second = sorted(listening)
        os.kill(first, signal.SIGTERM)
        await until_sockets(port, lambda f: set(f) == {second})
        async with asyncio.timeout(30):
            while True:
                if not await asyncio.to_thread(running, first):
                    break
                await asyncio.sleep(0.05)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{HOST}:{port}/healthcheck") as resp,
        ):
            assert resp.status == 200


async def test_serve_api_with_workers_runs_them_on_one_port(
    servers: Servers, tmp_path: Path
) -> None:
    port = claim_port(HOST, 0)
    async with serving(servers, tmp_path, ("api --workers 2",), port=port) as deployed:
        assert deployed.api_urls == [f"http://{HOST}:{port}"]
        listening = await until_sockets(port, lambda f: len(f) == 2)
        parents = {await asyncio.to_thread(parent_of, pid) for pid in listening}
        assert len(parents) == 1  # both children of the one `serve api --workers 2`
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{HOST}:{port}/healthcheck") as resp,
        ):
            assert resp.status == 200
    # The parent exited 0 on SIGTERM (serving checks) after stopping its workers.
    assert await asyncio.to_thread(sockets_on, port) == {}


def test_a_port_something_listens_on_is_not_claimed() -> None:
    """`cinderblock dev` claims its port first: it must not join another run's api processes
    through SO_REUSEPORT (nor anything else listening there)."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind((HOST, 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(SettingsError, match=f"cannot use {HOST}:{port}"):
            claim_port(HOST, port)
    assert claim_port(HOST, port) == port  # free again
