"""The JetStream stream every service agrees on."""

from __future__ import annotations

from cinderblock.bus.jetstream import StreamSpec
from cinderblock.config.settings import Settings


def stream_spec(settings: Settings) -> StreamSpec:
    return StreamSpec(
        name=settings.stream,
        subjects=[
            settings.subject(f"{aggregate}.events.>")
            for aggregate in ("volume", "snapshot", "type", "quota")
        ],
        replicas=settings.stream_replicas,
    )
