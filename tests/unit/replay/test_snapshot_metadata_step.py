"""Replay folds a snapshot's ``Updated`` as the live projection does: name and description
when present, and the whole metadata from the metadata endpoints."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from cinderblock.readmodels.event import ProjectionEvent
from cinderblock.readmodels.steps_resources import SNAPSHOT_STEPS


def updated(changes: dict[str, object]) -> ProjectionEvent:
    return ProjectionEvent(
        "Snapshot.Updated", uuid.uuid4(), 3, datetime(2026, 1, 1, tzinfo=UTC), {"changes": changes}
    )


def test_metadata_replaces_the_rows_metadata() -> None:
    (step,) = SNAPSHOT_STEPS["Snapshot.Updated"]
    row = {"name": "n", "description": None, "metadata": {"old": "1"}}
    step.change(row, updated({"metadata": {"new": "2"}}))
    assert row == {"name": "n", "description": None, "metadata": {"new": "2"}}
    step.change(row, updated({"name": "renamed"}))
    assert row == {"name": "renamed", "description": None, "metadata": {"new": "2"}}
