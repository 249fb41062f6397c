"""The live projector's SQL projections and replay's fold steps name the same events
(whether they agree row for row is tested on a generated log: tests/integration/replay)."""

from __future__ import annotations

from cinderblock.readmodels.projections import PROJECTIONS
from cinderblock.readmodels.rowstore import PROJECTED_TABLES
from cinderblock.readmodels.steps import STEPS


def test_every_projected_event_has_fold_steps_and_back() -> None:
    assert sorted(set(PROJECTIONS) - set(STEPS)) == [], "add the event's steps to steps.py"
    assert sorted(set(STEPS) - set(PROJECTIONS)) == [], "add the event's SQL to projections.py"


def test_steps_touch_only_projected_tables() -> None:
    tables = {step.table for steps in STEPS.values() for step in steps}
    assert tables == set(PROJECTED_TABLES)
