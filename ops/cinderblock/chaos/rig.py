"""The production shape, supervised: embedded PostgreSQL and nats-server under one fresh data
dir, and every service as its own `cinderblock serve <service>` process, each of which can be
killed (SIGKILL) and started again as systemd would restart it.

Two shapes (`Shape`): ``single``, one process per service and one nats-server; ``scaled``,
the scale-out shape of docs/operations.md on one host: a three-node NATS cluster (streams of
three replicas, every node in ``CINDERBLOCK_NATS_URL``), two api processes sharing one port
(SO_REUSEPORT, as `serve api --workers 2`), two sagas workers on the one durable, relay and
projector each with a hot standby (the advisory lock decides the active one), one billing,
one notifier. Every service process is an instance (``sagas-2``: the second sagas worker;
in the single shape the instance is named as its service) and connects to PostgreSQL with
its instance name as ``application_name``, so `holder` finds who holds a role's lock.

`cinderblock dev` cannot do this: when one of its children dies it stops everything. Here the
rig owns the data dir (the same flock and watchdog as `cinderblock dev`, so the servers go
away within seconds even if the rig itself is killed), nats-server keeps one port across
restarts (the services reconnect to the URL they were given) and PostgreSQL keeps its unix
socket. Every service process writes its JSON log lines to ``<root>/logs/<instance>.<n>.log``
(n: its start count), which the checks read afterwards (the driver's step-key lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from cinderblock.chaos.nats_cluster import NatsCluster
from cinderblock.cli.embedded import (
    EmbeddedNats,
    EmbeddedPostgres,
    Watchdog,
    _alive,
    _free_port,
    claim_data_dir,
)
from cinderblock.cli.processes import claim_port

SERVICES = ("api", "relay", "projector", "sagas", "billing", "notifier")
SERVERS = ("postgres", "nats")
NODE = "nats:"  # a target "nats:n2": that node of the cluster
STREAM = "VOLUME_EVENTS"  # the services' default CINDERBLOCK_STREAM
ROLES = ("relay", "projector")  # services with a hot standby: one holds the role's lock
STOP_GRACE = 20.0
RESTART_S = 0.2
READY_TIMEOUT = 60.0
# A service that gives up while starting (a JetStream API call timing out on a busy cluster:
# nats-py waits 5 s) does so within this many seconds of its start: the rig is ready once
# every process has lived this long, so no such exit lands in a fault's phase.
STARTED_S = 8.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def until(condition: Callable[[], bool], timeout: float, poll: float = 0.02) -> bool:
    """Wait until ``condition()`` holds or ``timeout`` seconds passed; whether it holds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll)


async def until_async(
    value: Callable[[], Awaitable[object]], timeout: float, poll: float = 0.1
) -> bool:
    """Wait until ``await value()`` is truthy or ``timeout`` seconds passed; whether it is."""
    deadline = time.monotonic() + timeout
    while True:
        if await value():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll)


class RigError(RuntimeError):
    """The rig could not start, restart or stop something."""


@dataclass(frozen=True)
class Shape:
    name: str
    instances: tuple[tuple[str, str], ...]  # (instance, service), in start order
    nats_nodes: int = 1  # 1: one nats-server; more: a cluster, streams of that many replicas

    def of(self, services: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        return tuple((i, s) for i, s in self.instances if s in services)


SINGLE = Shape("single", tuple((s, s) for s in SERVICES))
SCALED = Shape(
    "scaled",
    (
        ("api-1", "api"),
        ("api-2", "api"),
        ("relay-1", "relay"),
        ("relay-2", "relay"),
        ("projector-1", "projector"),
        ("projector-2", "projector"),
        ("sagas-1", "sagas"),
        ("sagas-2", "sagas"),
        ("billing", "billing"),
        ("notifier", "notifier"),
    ),
    nats_nodes=3,
)
SHAPES = {shape.name: shape for shape in (SINGLE, SCALED)}


class Rig:
    """Servers and service processes on ``root`` (a fresh directory the rig owns)."""

    def __init__(
        self,
        root: Path,
        *,
        services: tuple[str, ...] = SERVICES,
        shape: Shape = SINGLE,
        nova_url: str = "",
        environ: dict[str, str] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.services = services
        self.shape = shape
        self.instances = dict(shape.of(services))  # instance -> service
        self.nova_url = nova_url
        self.environ = dict(environ or {})
        self.postgres = EmbeddedPostgres(self.root)
        self.nats = EmbeddedNats(self.root, port=_free_port("127.0.0.1"))
        self.cluster: NatsCluster | None = None
        if shape.nats_nodes > 1:
            self.cluster = NatsCluster(self.root / "nats-cluster", preexec_fn=_die_with_parent)
            self.environ.setdefault("CINDERBLOCK_STREAM_REPLICAS", str(shape.nats_nodes))
        self.dsn = ""
        self.nats_url = ""
        self.port = 0
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: dict[str, int] = {}
        self.spawned_at: dict[str, float] = {}  # monotonic time of each instance's last start
        self._lock: int | None = None
        self._watchdog: Watchdog | None = None
        self._down: set[str] = set()  # killed on purpose, not to be restarted yet
        self._supervisor: asyncio.Task[None] | None = None
        # Services that exited by themselves and were started again: (name, exit code).
        self.self_exits: list[tuple[str, int]] = []
        self.exit_lines: list[str] = []  # the last log line of each (an exception's, often)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def env(self, instance: str = "") -> dict[str, str]:
        dsn = self.dsn
        if instance:  # who holds a lock: pg_stat_activity.application_name
            dsn += f"{'&' if '?' in dsn else '?'}application_name={instance}"
        env = {
            **os.environ,
            "CINDERBLOCK_DATABASE_URL": dsn,
            "CINDERBLOCK_NATS_URL": self.nats_url,
            "CINDERBLOCK_DATA_DIR": str(self.root),
            "CINDERBLOCK_HOST": "127.0.0.1",
            "CINDERBLOCK_PORT": str(self.port),
            "CINDERBLOCK_LOG_FORMAT": "json",
            "CINDERBLOCK_LOG_LEVEL": "INFO",
            "CINDERBLOCK_NOVA_URL": self.nova_url,
            **self.environ,
        }
        if not self.nova_url:
            env.pop("CINDERBLOCK_NOVA_URL")
        return env

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self._lock = await asyncio.to_thread(claim_data_dir, self.root)
        self._watchdog = Watchdog(self.root, self._lock)
        await asyncio.to_thread(self._watchdog.start)
        self.dsn = await asyncio.to_thread(self.postgres.start)
        if self.cluster is not None:
            # From this (the main) thread: the nodes' parent-death signal follows it.
            await self.cluster.start(self.shape.nats_nodes)
            self.nats_url = self.cluster.url
        else:
            self.nats_url = await asyncio.to_thread(self.nats.start)
        self.port = claim_port("127.0.0.1", 0)
        # The first api first: it creates the schemas the others expect.
        first = True
        for name, service in self.instances.items():
            self.spawn(name)
            if service == "api":
                await (self.until_healthy() if first else self.until_listening(name))
                first = False
        # Supervised from here on: a service that gives up while the others start (a stream
        # update timing out on a busy cluster) is started again, as systemd would.
        self._supervisor = asyncio.create_task(self._supervise())
        for service in ROLES:
            if service in self.instances.values() and not await until_async(
                lambda service=service: self.holder(self.role(service)), READY_TIMEOUT
            ):
                raise RigError(f"no {service} became active within {READY_TIMEOUT:g} s")

        def started() -> bool:
            now = time.monotonic()
            return all(
                self.procs[name].poll() is None and now - self.spawned_at[name] >= STARTED_S
                for name in self.instances
            )

        if not await until(started, READY_TIMEOUT, 0.1):
            raise RigError(f"services kept exiting while starting: {self.exit_lines}")

    async def _supervise(self) -> None:
        """As systemd's Restart=always: a service that exits by itself (not one we killed) is
        started again after RESTART_S; each such exit is kept in ``self_exits``."""
        while True:
            await asyncio.sleep(RESTART_S)
            for name, proc in list(self.procs.items()):
                if name not in self._down and proc.poll() is not None:
                    self.self_exits.append((name, proc.returncode))
                    self.exit_lines.append(f"{name}: {self.last_line(name)}")
                    self.spawn(name)

    def log_of(self, name: str) -> Path:
        """The log file of ``name``'s current (last) start."""
        return self.logs / f"{name}.{self.starts.get(name, 0)}.log"

    def last_line(self, name: str) -> str:
        """The last line of ``name``'s current log, shortened."""
        try:
            lines = self.log_of(name).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""

    def logged(self, name: str, text: str) -> int:
        """How many lines of ``name``'s current log contain ``text``."""
        try:
            return self.log_of(name).read_text(errors="replace").count(text)
        except OSError:
            return 0

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        n = self.starts[name] = self.starts.get(name, 0) + 1
        code = "import sys; from cinderblock.cli.main import main; sys.exit(main())"
        service = self.instances[name]
        args = [sys.executable, "-c", code, "serve", service, "--data-dir", str(self.root)]
        with open(self.logs / f"{name}.{n}.log", "ab") as log:
            proc = subprocess.Popen(
                args,
                env=self.env(name),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        self.procs[name] = proc
        self.spawned_at[name] = time.monotonic()
        return proc

    async def until_listening(self, name: str, timeout: float = READY_TIMEOUT) -> None:
        """Until the api instance ``name`` (started last) has bound the shared port: a
        health check on the port may be answered by another api process."""

        def listening() -> bool:
            if self.procs[name].poll() is not None:
                raise RigError(f"{name} exited with {self.procs[name].returncode} while starting")
            return self.logged(name, '"api listening"') > 0

        if not await until(listening, timeout, 0.05):
            raise RigError(f"{name} did not listen within {timeout:g} s")

    async def until_healthy(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        apis = [name for name, service in self.instances.items() if service == "api"]
        async with aiohttp.ClientSession() as session:
            while True:
                proc = self.procs.get(apis[0]) if apis else None
                if proc is not None and proc.poll() is not None:
                    raise RigError(f"{apis[0]} exited with {proc.returncode} while starting")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"{self.api_url}/healthcheck") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RigError(f"the api did not answer within {timeout:g} s")
                await asyncio.sleep(0.05)

    @property
    def stream(self) -> str:
        return self.env().get("CINDERBLOCK_STREAM") or STREAM

    def role(self, service: str) -> str:
        """The advisory lock name of ``service`` (relay, projector): who holds it works."""
        return f"relay:{self.stream}" if service == "relay" else f"{service}:volumes"

    async def holder(self, role: str) -> str | None:
        """The instance holding ``role``'s advisory lock (`cinderblock.runtime.leadership`:
        ``pg_try_advisory_lock(hashtext(role))``), None when nobody does."""
        try:
            conn = await asyncpg.connect(self.dsn, timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return None
        try:
            name = await conn.fetchval(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext($1)::bigint",
                role,
            )
        finally:
            await conn.close()
        return str(name) if name else None

    async def target(self, fault: str) -> str:
        """What ``fault`` kills now: "nats-node" the node leading the event stream (the
        hardest case: a new stream leader is elected), "<service>-active" the instance
        holding the service's lock, "<service>-one" its first instance; anything else
        names its target itself (an instance, "postgres", "nats")."""
        if fault == "nats-node":
            if self.cluster is None:
                raise RigError("nats-node needs a NATS cluster (the scaled shape)")
            leader = await self.cluster.stream_leader(self.stream)
            if leader is None:
                raise RigError(f"the stream has no leader: {self.cluster.logs()}")
            return f"{NODE}{leader}"
        service, _, which = fault.rpartition("-")
        if which == "active" and service in ROLES:
            holder = await self.holder(self.role(service))
            if holder is None or holder not in self.instances:
                raise RigError(f"nobody holds {self.role(service)} (holder: {holder})")
            return holder
        if which == "one":
            return next(i for i, s in self.instances.items() if s == service)
        if fault in self.instances or fault in SERVERS:
            return fault
        raise RigError(f"no target for {fault} in the {self.shape.name} shape")

    def pid(self, target: str) -> int:
        if target == "postgres":
            pid = self.postgres.postmaster_pid()
        elif target.startswith(NODE):
            assert self.cluster is not None
            pid = self.cluster.node(target.removeprefix(NODE)).pid
        elif target == "nats":
            proc = self.nats._proc
            pid = proc.pid if proc is not None and proc.poll() is None else None
        else:
            pid = self.procs[target].pid if self.procs[target].poll() is None else None
        if pid is None:
            raise RigError(f"{target} is not running")
        return pid

    async def kill(self, target: str) -> int:
        """SIGKILL ``target`` (a service, "postgres": the postmaster, "nats") and wait until
        it is gone; its pid."""
        pid = self.pid(target)
        self._down.add(target)
        os.kill(pid, signal.SIGKILL)
        if target in self.procs:
            gone = await until(lambda: self.procs[target].poll() is not None, 10)
        elif target.startswith(NODE):
            assert self.cluster is not None
            node = self.cluster.node(target.removeprefix(NODE))
            gone = await until(lambda: not node.alive(), 10)
        elif target == "nats":
            nats = self.nats._proc
            assert nats is not None
            gone = await until(lambda: nats.poll() is not None, 10)
        else:
            gone = await until(lambda: not _alive(pid), 10)
        if not gone:
            raise RigError(f"{target} (pid {pid}) survived SIGKILL")
        return pid

    async def restart(self, target: str) -> None:
        if target == "postgres":
            dsn = await asyncio.to_thread(self.postgres.start)
            if dsn != self.dsn:
                raise RigError(f"PostgreSQL came back at {dsn}, not {self.dsn}")
        elif target.startswith(NODE):
            assert self.cluster is not None
            await self.cluster.restart(target.removeprefix(NODE))
        elif target == "nats":
            url = await asyncio.to_thread(self.nats.start)
            if url != self.nats_url:
                raise RigError(f"nats-server came back at {url}, not {self.nats_url}")
        else:
            self.spawn(target)
            self._down.discard(target)
            if self.instances[target] == "api":
                await self.until_listening(target)
        self._down.discard(target)

    async def stop(self) -> dict[str, int | None]:
        """Stop every service (SIGTERM, then SIGKILL after the grace), then the servers;
        the services' exit codes."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        procs = list(self.procs.values())
        await until(lambda: all(p.poll() is not None for p in procs), STOP_GRACE, 0.05)
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            if proc.poll() is None:
                proc.kill()
                await asyncio.to_thread(proc.wait)
            codes[name] = proc.returncode
        try:
            with contextlib.suppress(Exception):
                if self.cluster is not None:
                    self.cluster.close()
                else:
                    await asyncio.to_thread(self.nats.stop)
            await asyncio.to_thread(self.postgres.stop)
        finally:
            if self._watchdog is not None:
                await asyncio.to_thread(self._watchdog.close)
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None
        return codes
