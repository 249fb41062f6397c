"""The objects handlers use, kept under typed application keys."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from cinderblock.api.middleware import serving_log_fields
from cinderblock.config.settings import Settings
from cinderblock.images.port import ImageService
from cinderblock.readmodels.waiter import ProjectionWaiter
from cinderblock.store.eventstore import Position
from cinderblock.store.volumes import Volumes
from cinderblock.wire.policy import Enforcer

if TYPE_CHECKING:
    from collections.abc import Callable

    from cinderblock.api.context import RequestContext
    from cinderblock.api.nova_guard import NovaGuard
    from cinderblock.domain.volume import Volume

log = logging.getLogger(__name__)


@dataclass
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    volumes: Volumes
    waiter: ProjectionWaiter
    policy: Enforcer
    images: ImageService
    # Asks Nova before a user pulls an attachment from under an instance (None: no Nova).
    nova: NovaGuard | None = None

    async def nova_allows(
        self,
        ctx: RequestContext,
        volume_id: str,
        attachment_id: str | None,
        authorize: Callable[[Volume], None],
    ) -> None:
        """The attachment safety check's question to Nova, when a Nova is configured."""
        if self.nova is not None:
            await self.nova.check(ctx, self.volumes, volume_id, attachment_id, authorize)

    async def read_your_write(self, at: Position, *, volume_id: str | None = None) -> bool:
        """Hold the reply until the read models show this write, at most ``read_wait``.

        False when they do not yet: the write is stored all the same (the log is the truth),
        so the command still answers as it would (a view it shows is then built from the
        log, ``cinderblock.api.written``); the lag is logged with the request's fields and
        ``volume_id`` (default: the one in the URL).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        if await self.waiter.wait_for((at.tx_id, at.position), self.settings.read_wait):
            return True
        fields = serving_log_fields()
        if volume_id is not None:
            fields["volume_id"] = volume_id
        log.warning(
            "read model behind a stored command; answered without waiting longer",
            extra={
                **fields,
                "waited_s": round(loop.time() - started, 3),
                "position": f"{at.tx_id}:{at.position}",
                "projected": "{}:{}".format(*self.waiter.watermark),
            },
        )
        return False


DEPS = web.AppKey("deps", Deps)


def deps(request: web.Request) -> Deps:
    return request.app[DEPS]
