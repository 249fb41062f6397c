"""What a read model needs of one stored event: its name, aggregate, version, time and data
as plain values (``replay.decode.Event`` is the same shape, built cheaply from a row)."""

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
