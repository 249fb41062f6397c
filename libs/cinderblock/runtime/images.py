"""Which image service the upload action talks to: Glance v2 when configured, otherwise
the local image store under the data directory (the embedded default)."""

from __future__ import annotations

from pathlib import Path

from cinderblock.config.settings import Settings
from cinderblock.images.glance import GlanceImageService
from cinderblock.images.local import LocalImageStore
from cinderblock.images.port import ImageService


def build_image_service(settings: Settings) -> ImageService:
    if settings.glance_url:
        return GlanceImageService(settings.glance_url, token=settings.glance_token or None)
    return LocalImageStore(Path(settings.data_dir) / "images")


async def close_image_service(images: ImageService) -> None:
    """Release what an adapter holds (the Glance client's HTTP session)."""
    close = getattr(images, "close", None)
    if close is not None:
        await close()
