"""The API's composition root: builds the aiohttp application and owns its connections."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from cinderblock.api.action_table import ACTION_TABLE
from cinderblock.api.deps import DEPS, Deps
from cinderblock.api.middleware import KEYSTONE, OBSERVER, cinder_middleware
from cinderblock.api.nova_guard import NovaGuard
from cinderblock.api.observe import RequestObserver
from cinderblock.api.outage import DATABASE_WATCH, DatabaseWatch
from cinderblock.api.routes import setup_routes
from cinderblock.api.server import CinderAppRunner
from cinderblock.audit.requests import RequestLog
from cinderblock.config.settings import Settings, SettingsError
from cinderblock.identity.keystone import KeystoneValidator
from cinderblock.readmodels.waiter import ProjectionWaiter
from cinderblock.runtime.images import build_image_service, close_image_service
from cinderblock.runtime.infra import alive, database
from cinderblock.runtime.metrics import (
    CONTENT_TYPE,
    Metrics,
    MultiprocessDir,
    build_metrics,
    multiprocess,
)
from cinderblock.store.eventstore import AsyncEventStore
from cinderblock.store.volumes import Volumes, VolumesConfig
from cinderblock.store.writer import shared_writer
from cinderblock.wire.policy import Enforcer, PolicyConfigError

log = logging.getLogger(__name__)

# Cinder's osapi_max_request_body_size.
MAX_BODY = 114688
METRICS = web.AppKey("metrics", Metrics)


def create_app(
    settings: Settings,
    *,
    policy: Enforcer | None = None,
    metrics_dir: MultiprocessDir | None = None,
) -> web.Application:
    """The API. ``metrics_dir``: where the api processes sharing this one's port sum their
    HTTP metrics (``cinderblock.runtime.metrics.multiprocess``); None keeps them in memory."""
    try:
        enforcer = policy or Enforcer(policy_file=settings.policy_file)
    except PolicyConfigError as err:
        raise SettingsError(f"CINDERBLOCK_POLICY_FILE: {err}") from err
    settings.require_keystone()
    app = web.Application(middlewares=[cinder_middleware], client_max_size=MAX_BODY)
    setup_routes(app, settings.project_id_regex)
    app.router.add_get("/metrics", _metrics, allow_head=False)
    metrics = build_metrics(metrics_dir, ACTION_TABLE, settings.nats_url, settings.stream)
    observer = RequestObserver(metrics, None)
    app[METRICS] = metrics
    app[OBSERVER] = observer
    if settings.auth_strategy == "keystone":
        app.cleanup_ctx.append(_keystone(settings))

    async def infra(app: web.Application) -> AsyncIterator[None]:
        async with database(settings, max_size=16) as pool:
            waiter = ProjectionWaiter(pool)
            await waiter.start()
            writer = shared_writer(pool)
            volumes = Volumes(
                AsyncEventStore(pool, writer=writer),
                VolumesConfig(
                    quota_limits=settings.quota_limits,
                    default_availability_zone=settings.default_availability_zone,
                ),
            )
            images = build_image_service(settings)
            nova_session = aiohttp.ClientSession() if settings.nova_url else None
            nova = NovaGuard(settings, nova_session) if nova_session is not None else None
            app[DEPS] = Deps(settings, pool, volumes, waiter, enforcer, images, nova)
            app[DATABASE_WATCH] = DatabaseWatch(pool)
            request_log = observer.request_log = RequestLog(pool)
            request_log.start()
            bootstrapped = await volumes.ensure_default_type()
            if bootstrapped is not None:
                await app[DEPS].read_your_write(bootstrapped)
            try:
                async with writer.invalidations(pool):  # commands build on held heads
                    yield
            finally:
                await request_log.stop()
                await metrics.shared.close()
                await app[DATABASE_WATCH].stop()
                await waiter.stop()
                await close_image_service(images)
                if nova_session is not None:
                    await nova_session.close()

    app.cleanup_ctx.append(infra)
    return app


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus' text format: every api process's HTTP figures and the shared state
    (docs/operations.md, "Watching it"). Unauthenticated like /healthcheck: it names
    routes, consumers and counts, never a project, user or volume."""
    deps = request.app.get(DEPS)
    body = await request.app[METRICS].render(deps.pool if deps is not None else None)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _keystone(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def keystone(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            app[KEYSTONE] = KeystoneValidator(settings, session)
            log.info("auth strategy keystone", extra={"auth_url": settings.keystone_auth_url})
            yield

    return keystone


async def run(
    settings: Settings, *, stop: asyncio.Event, ready: Callable[[str], None] | None = None
) -> None:
    """Serve until ``stop``; in-flight requests finish before the pool closes. ``ready`` gets
    the base URL once the port is bound (the real port when ``settings.port`` is 0).

    A given port is bound with SO_REUSEPORT, so several api processes (`serve api
    --workers N`, or separate `serve api` runs of one user) share it and the kernel spreads
    the connections over them; port 0 asks for a port of this process's own."""
    settings.require_servers()
    _warn_if_noauth_exposed(settings)
    # CinderAppRunner: what aiohttp's parser refuses is answered as a Cinder fault too.
    with multiprocess(settings.host, settings.port) as metrics_dir:
        app = create_app(settings, metrics_dir=metrics_dir)
        runner = CinderAppRunner(app, access_log=None, shutdown_timeout=10)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=settings.port != 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        log.info("api listening", extra={"url": url})
        if ready is not None:
            ready(url)
        with alive("api"):
            try:
                await stop.wait()
            finally:
                await runner.cleanup()


def _warn_if_noauth_exposed(settings: Settings) -> None:
    """noauth believes whatever ``X-Auth-Token`` says and makes every caller admin: say so
    loudly when the API listens beyond loopback."""
    if settings.auth_strategy != "noauth" or _is_loopback(settings.host):
        return
    log.warning(
        "auth_strategy noauth on %s: every caller that reaches this port is admin; "
        "bind 127.0.0.1 or set CINDERBLOCK_AUTH_STRATEGY=keystone",
        settings.host or "all interfaces",
        extra={"host": settings.host, "auth_strategy": settings.auth_strategy},
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name (or "" for every interface): not known to be loopback
        return False
