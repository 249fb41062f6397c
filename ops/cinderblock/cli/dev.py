"""`cinderblock dev`: a real PostgreSQL and a real NATS JetStream under a data directory,
and every service: by default, on a machine of several CPUs, one api process per CPU but
one sharing the port and each consumer in a process of its own
(`cinderblock.cli.processes`); with ``--workers 1`` (and no ``--processes``), or on one
CPU, all of them in this one process. Ctrl-C drains and stops everything, the
servers too.

A data dir belongs to one `cinderblock dev` (an flock held for the process's life): a
second one on it stops with exit code 2 naming the owner's pid, touching nothing. A watchdog
process stops the servers within seconds when `cinderblock dev` dies without doing so
itself (kill -9); see `cinderblock.cli.embedded`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import uuid
from pathlib import Path

from cinderblock.cli.embedded import (
    DataDirInUseError,
    EmbeddedNats,
    EmbeddedPostgres,
    Watchdog,
    claim_data_dir,
)
from cinderblock.cli.processes import claim_port, run_processes
from cinderblock.cli.system import run_all
from cinderblock.config.settings import Settings, SettingsError

log = logging.getLogger(__name__)


def dev_identity(data_dir: Path) -> dict[str, str]:
    """A project id and token for this data dir, kept across restarts."""
    path = data_dir / "dev.json"
    if path.exists():
        identity: dict[str, str] = json.loads(path.read_text())
        return identity
    project = uuid.uuid4().hex
    identity = {"project_id": project, "user_id": "admin", "token": f"admin:{project}"}
    path.write_text(json.dumps(identity, indent=2) + "\n")
    return identity


def shape(workers: int, processes: bool) -> str:
    """How the services run, for the banner."""
    if workers == 1 and not processes:
        return "every service in this process (--workers 1)"
    api = "1 api process" if workers == 1 else f"{workers} api processes sharing the port"
    return f"{api}, every other service in a process of its own"


def banner(url: str, identity: dict[str, str], running: str = "") -> str:
    project, token = identity["project_id"], identity["token"]
    return "\n".join(
        [
            "",
            f"Cinderblock is running: {url}/v3/{project}",
            *([f"  services   : {running}"] if running else []),
            f"  project id : {project}",
            f"  token      : {token}   (noauth: every caller is admin; send X-Roles to act as "
            "member or reader)",
            "Try:",
            f"  curl -s -X POST -H 'X-Auth-Token: {token}' -H 'Content-Type: application/json' "
            f'-d \'{{"volume": {{"size": 1}}}}\' {url}/v3/{project}/volumes',
            f"  curl -s -H 'X-Auth-Token: {token}' {url}/v3/{project}/volumes/detail",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


def _prepare(data_dir: Path) -> Path:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


def api_workers(workers: int | None) -> int:
    """The api processes to run: ``--workers``, by default one per CPU but one. The CPU
    left over is the consumers', PostgreSQL's and NATS's: on the 2-CPU machine of
    ops/bench/RESULTS.md two api processes carried less than one (os-set_bootable at
    concurrency 16: 883-1,073/s against 1,193-1,212/s), each competing for the cores the
    projector it waits on needs."""
    count = max(1, (os.cpu_count() or 1) - 1) if workers is None else workers
    if count < 1:
        raise SettingsError(f"--workers must be at least 1, not {count}")
    return count


def separate_processes(workers: int | None, processes: bool) -> bool:
    """Whether the services run as processes of their own: asked for, or more than one api
    process, or by default wherever there is more than one CPU."""
    if processes or (workers is not None and workers > 1):
        return True
    return workers is None and (os.cpu_count() or 1) > 1


async def run_dev(
    settings: Settings, *, processes: bool = False, workers: int | None = None
) -> None:
    """Run until Ctrl-C: ``workers`` api processes (default: one per CPU but one) and
    every consumer in its own process, or everything in this process (``--workers 1``
    without ``processes``, or a machine of one CPU)."""
    count = api_workers(workers)
    processes = separate_processes(workers, processes)
    data_dir = await asyncio.to_thread(_prepare, Path(settings.data_dir))
    try:
        lock = await asyncio.to_thread(claim_data_dir, data_dir)
    except DataDirInUseError as err:
        raise SettingsError(str(err)) from err
    try:
        port = claim_port(settings.host, settings.port)
        watchdog = Watchdog(data_dir, lock)
        await asyncio.to_thread(watchdog.start)
        try:
            await _run_owned(settings.model_copy(update={"port": port}), data_dir, count, processes)
        finally:
            await asyncio.to_thread(watchdog.close)
    finally:
        os.close(lock)


async def _run_owned(settings: Settings, data_dir: Path, count: int, processes: bool) -> None:
    """The servers and services on a data dir this process owns, until Ctrl-C."""
    postgres, nats_server = EmbeddedPostgres(data_dir), EmbeddedNats(data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(f"Starting PostgreSQL and NATS under {data_dir} …", flush=True)
        dsn = await asyncio.to_thread(postgres.start)
        nats_url = await asyncio.to_thread(nats_server.start)
        settings = settings.model_copy(
            update={
                "database_url": dsn,
                "nats_url": nats_url,
                "data_dir": data_dir,
            }
        )
        identity = dev_identity(data_dir)

        def ready(url: str) -> None:
            print(banner(url, identity, shape(count, processes)), flush=True)

        if processes:
            await run_processes(settings, stop=stop, ready=ready, workers=count)
        else:
            await run_all(settings, stop=stop, ready=ready)
    finally:
        print("Stopping …", flush=True)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(nats_server.stop)
        await asyncio.to_thread(postgres.stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        print("Stopped.", flush=True)
