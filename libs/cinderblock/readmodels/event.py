"""What a read model needs of one stored event: its name, aggregate, version, time and data
as plain values, and of the ``meta`` beside it the request it serves (``replay.decode.Event``
is the same shape, built cheaply from a row)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class ProjectionEvent:
    name: str  # e.g. "Volume.Extended"
    aggregate_id: UUID
    version: int
    timestamp: datetime
    data: Mapping[str, Any]
    # From the event's meta: the id and project of the API request it serves (a saga's
    # events carry those of the request that began the chain); None when not recorded.
    request_id: str | None = None
    request_project_id: str | None = None
