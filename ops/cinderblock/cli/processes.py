"""Every service as its own process: `cinderblock dev` (unless ``--workers 1``) and
`cinderblock serve api --workers N`.

One `cinderblock serve <service>` child per consumer and ``workers`` children of `serve api`,
each with the parent's settings as ``CINDERBLOCK_*`` variables, so the services use every
core (one event loop per process) exactly as a production deployment runs them. The api
children share one port: each binds it with SO_REUSEPORT and the kernel spreads the
connections over them. The children die with the parent, also when it is SIGKILLed (Linux
parent-death signal); if one of them exits, the others are stopped and the run ends with an
error naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

import aiohttp

from cinderblock.cli.system import SERVICES
from cinderblock.config.settings import Settings, SettingsError, settings_environ

log = logging.getLogger(__name__)

STOP_GRACE = 20.0  # seconds a child gets to drain after SIGTERM
READY_TIMEOUT = 60.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def claim_port(host: str, port: int) -> int:
    """``port`` (a free one for 0) after checking that nothing listens on it yet.

    A plain bind is refused by any listener, SO_REUSEPORT ones included: without this check
    a second `cinderblock dev` on the same port would silently join the first one's api
    processes and answer half the requests from another database."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind(address)
        except OSError as err:
            raise SettingsError(f"cannot use {host}:{port}: {err.strerror}") from err
        claimed: int = sock.getsockname()[1]
        return claimed


def process_names(services: tuple[str, ...], workers: int) -> list[tuple[str, str]]:
    """(name, service) of every child: ``workers`` api processes (api-1 … when more than
    one), one process for every other service."""
    if workers < 1:
        raise SettingsError(f"--workers must be at least 1, not {workers}")
    names: list[tuple[str, str]] = []
    for service in services:
        if service == "api" and workers > 1:
            names.extend((f"api-{i}", "api") for i in range(1, workers + 1))
        else:
            names.append((service, service))
    return names


async def _spawn(service: str, settings: Settings) -> asyncio.subprocess.Process:
    env = {**os.environ, **settings_environ(settings)}
    code = "import sys; from cinderblock.cli.main import main; sys.exit(main())"
    args = ["serve", service, "--data-dir", str(settings.data_dir)]
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, env=env, preexec_fn=_die_with_parent
    )


async def _until_ready(url: str, children: dict[str, asyncio.subprocess.Process]) -> None:
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while True:
            exited = [n for n, p in children.items() if p.returncode is not None]
            if exited:
                raise SettingsError(f"service {exited[0]} exited while starting")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"{url}/healthcheck") as resp:
                    if resp.status == 200:
                        return
            if asyncio.get_running_loop().time() > deadline:
                raise SettingsError(f"the api did not answer at {url} within {READY_TIMEOUT:g} s")
            await asyncio.sleep(0.1)


async def _stop(children: dict[str, asyncio.subprocess.Process]) -> None:
    for proc in children.values():
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    for name, proc in children.items():
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            log.warning("service %s did not stop in time: killed", name)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def run_processes(
    settings: Settings,
    *,
    stop: asyncio.Event,
    ready: Callable[[str], None] | None = None,
    workers: int = 1,
    services: tuple[str, ...] = SERVICES,
) -> None:
    """Run ``workers`` api children and one child per other service until ``stop`` or until
    a child exits (then stop the rest and raise). ``ready`` gets the api's URL once it
    answers its health check."""
    names = process_names(services, workers)
    if settings.port == 0:  # the api children must all bind the same port
        settings = settings.model_copy(update={"port": claim_port(settings.host, 0)})
    url = f"http://{settings.host}:{settings.port}"
    children: dict[str, asyncio.subprocess.Process] = {}
    try:
        for name, service in names:
            children[name] = await _spawn(service, settings)
        if ready is not None:
            await _until_ready(url, children)
            ready(url)
        waits = {asyncio.create_task(p.wait(), name=n) for n, p in children.items()}
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({*waits, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (*waits, stopping):
            task.cancel()
        if stopping not in done:
            exited = sorted(t.get_name() for t in done)
            codes = {n: children[n].returncode for n in exited}
            raise SettingsError(f"service {', '.join(exited)} exited unexpectedly: {codes}")
    finally:
        await _stop(children)
