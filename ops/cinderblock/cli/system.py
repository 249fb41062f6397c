"""Every service in one process, sharing one stop signal: `cinderblock dev` and the e2e
tests run exactly this, the same `run()` each service has as its own process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cinderblock.config.settings import Settings
    from cinderblock.drivers.base import VolumeDriver

log = logging.getLogger(__name__)

SERVICES = ("api", "relay", "projector", "sagas", "notifier", "billing")


async def run_all(
    settings: Settings,
    *,
    stop: asyncio.Event,
    ready: Callable[[str], None] | None = None,
    driver: VolumeDriver | None = None,
) -> None:
    """Run api, relay, projector, sagas, the Nova notifier (idle when CINDERBLOCK_NOVA_URL
    is unset) and billing until ``stop``; if one fails, stop the rest and re-raise its error."""
    from cinderblock.api import app as api
    from cinderblock.billing import run as billing
    from cinderblock.notifier import run as notifier
    from cinderblock.projector import run as projector
    from cinderblock.relay import run as relay
    from cinderblock.sagas import run as sagas

    tasks = {
        asyncio.create_task(api.run(settings, stop=stop, ready=ready), name="api"),
        asyncio.create_task(relay.run(settings, stop=stop), name="relay"),
        asyncio.create_task(projector.run(settings, stop=stop), name="projector"),
        asyncio.create_task(sagas.run(settings, stop=stop, driver=driver), name="sagas"),
        asyncio.create_task(notifier.run(settings, stop=stop), name="notifier"),
        asyncio.create_task(billing.run(settings, stop=stop), name="billing"),
    }
    failure: BaseException | None = None
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.cancelled():
                continue
            err = task.exception()
            if err is not None and failure is None:
                failure = err
                log.error("service %s failed: %s", task.get_name(), err, exc_info=err)
        if failure is not None or (done and not stop.is_set()):
            stop.set()
    if failure is not None:
        raise failure


async def run_service(
    name: str, settings: Settings, *, stop: asyncio.Event, workers: int = 1
) -> None:
    """Run service ``name`` alone (``cinderblock serve``); only its own code is imported.
    ``workers`` > 1 (api only): that many `serve api` children sharing the port instead
    (`cinderblock.cli.processes`), this process only supervising them."""
    if workers != 1:
        from cinderblock.config.settings import SettingsError

        if name != "api":
            raise SettingsError(f"--workers is for `serve api` only, not {name}")
        from cinderblock.cli.processes import run_processes

        settings.require_servers()
        await run_processes(settings, stop=stop, workers=workers, services=("api",))
        return
    module = "cinderblock.api.app" if name == "api" else f"cinderblock.{name}.run"
    await import_module(module).run(settings, stop=stop)
