"""The event envelope on NATS: what consumers get instead of a Python class path."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1


# The aggregate class that holds an event (events declared on a mixin are re-declared on
# the aggregate by eventsourcing, and stored under the aggregate's name).
AGGREGATE_OF = {
    "Volume": "volume",
    "ProjectQuota": "quota",
    "Snapshot": "snapshot",
    "VolumeType": "type",
    "TypeNameClaim": "type",
}


def event_type(name: str) -> str:
    """``Volume.ExtendRequested`` → ``volume.extend_requested``."""
    holder, _, event = name.partition(".")
    aggregate = AGGREGATE_OF[holder]
    return f"{aggregate}.{re.sub(r'(?<!^)(?=[A-Z])', '_', event).lower()}"


class EventEnvelope(BaseModel):
    """Published by the relay, validated strictly (unknown fields are a producer bug).

    ``id`` is ``<aggregate_id>:<version>``, also the ``Nats-Msg-Id``. The stream carries
    volume and quota events, so the aggregate is named generically (``aggregate``,
    ``aggregate_id``, ``version``) rather than ``volume_id``/``volume_version``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    type: str
    schema_version: int = SCHEMA_VERSION
    aggregate: str
    aggregate_id: str
    version: int
    position: int
    occurred_at: datetime
    request_id: str | None = None
    meta: dict[str, Any] = {}
    data: dict[str, Any] = {}


class ReceivedEnvelope(EventEnvelope):
    """What consumers parse: unknown (newer) fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
