"""The objects handlers use, kept under typed application keys."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiohttp import web

from cinderblock.config.settings import Settings
from cinderblock.images.port import ImageService
from cinderblock.readmodels.waiter import ProjectionWaiter
from cinderblock.store.eventstore import Position
from cinderblock.store.volumes import Volumes
from cinderblock.wire.policy import Enforcer


@dataclass
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    volumes: Volumes
    waiter: ProjectionWaiter
    policy: Enforcer
    images: ImageService

    async def read_your_write(self, at: Position) -> None:
        """Hold the reply until the read models show this write (bounded)."""
        await self.waiter.wait_for((at.tx_id, at.position), self.settings.read_wait)


DEPS = web.AppKey("deps", Deps)


def deps(request: web.Request) -> Deps:
    return request.app[DEPS]
