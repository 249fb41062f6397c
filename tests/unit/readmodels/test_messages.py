"""User messages: which failure records which of Cinder's Action and Detail fields, for the
reasons our sagas and driver actually state; the rows the projection folds (ids stable,
30 days to live, a delete that only marks its own aggregate's message); the view."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cinderblock.domain.sagas import retype as retype_rules
from cinderblock.domain.sagas.extend import NO_VALID_BACKEND
from cinderblock.drivers.errors import CapacityError
from cinderblock.drivers.faults import INJECTED_REASON
from cinderblock.drivers.ledger import Ledger
from cinderblock.readmodels.event import ProjectionEvent
from cinderblock.readmodels.folds import Row
from cinderblock.readmodels.messages import (
    MESSAGE_STEPS,
    RULES,
    message_id,
    user_message_of,
)
from cinderblock.readmodels.rowstore import Folder
from cinderblock.readmodels.steps import STEPS
from cinderblock.readmodels.tables import TableSpec
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.user_messages import (
    Action,
    Detail,
    message_view,
    translate_action,
    translate_detail,
    user_message,
)
from cinderblock.wire.views import ViewContext

pytestmark = pytest.mark.unit

VOLUME = uuid.UUID("6d1f0c8e-5b0a-4c55-9d43-1f2e3a4b5c6d")
AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def event_id(name: str, **data: Any) -> str | None:
    found = user_message_of(name, data)
    return None if found is None else found.event_id


def capacity_reasons() -> list[str]:
    """The file driver's own CapacityError reasons (a full pool; no pool with room)."""
    from cinderblock.drivers.base import PoolConfig

    pool = PoolConfig.parse("node1@file-a#pool0:1")
    ledger = Ledger({pool.location: pool}, {})
    reasons = []

    async def collect() -> None:
        for attempt in (
            ledger.reserve(pool, "extend", "v", 2 * 2**30),
            ledger.reserve_best("create", "v", 2 * 2**30, [pool]),
        ):
            try:
                await attempt
            except CapacityError as err:
                reasons.append(err.reason)

    asyncio.run(collect())
    return reasons


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("Volume.CreateFailed", {"reason": "No valid backend was found: no pool fits"}, "001_003"),
        ("Volume.CreateFailed", {"reason": INJECTED_REASON}, "008_012"),
        (
            "Volume.ExtendFailed",
            {"reason": INJECTED_REASON, "status": "error_extending"},
            "007_010",
        ),
        ("Volume.ExtendFailed", {"reason": NO_VALID_BACKEND, "status": "available"}, "007_003"),
        (
            "Volume.ExtendFailed",
            {"reason": "injected capacity shortage", "status": "in-use"},
            "007_003",
        ),
        ("Volume.RetypeFailed", {"reason": retype_rules.NEVER_MOVE}, "101_003"),
        ("Volume.RetypeFailed", {"reason": retype_rules.NEVER_REENCRYPT}, "101_003"),
        ("Volume.RetypeFailed", {"reason": retype_rules.NO_BACKEND}, "101_003"),
        ("Volume.RetypeFailed", {"reason": retype_rules.HAS_SNAPSHOTS}, "101_027"),
        ("Volume.RetypeFailed", {"reason": retype_rules.ATTACHED}, "101_027"),
        ("Volume.RetypeFailed", {"reason": "gave up after repeated failures"}, "101_001"),
        (
            "Volume.MigrationFailed",
            {"reason": "No valid backend was found. Cannot place"},
            "102_003",
        ),
        ("Volume.MigrationFailed", {"reason": "checksum mismatch"}, "102_001"),
        ("Volume.RevertFailed", {"reason": INJECTED_REASON}, "103_001"),
        ("Volume.DeleteFailed", {"reason": INJECTED_REASON}, "104_001"),
        ("Volume.UnexportFailed", {"reason": INJECTED_REASON}, "105_022"),
        ("Volume.ExportFailed", {"reason": INJECTED_REASON}, "002_021"),
        ("Volume.UnmanageFailed", {"reason": INJECTED_REASON}, "006_001"),
        ("Volume.UploadFailed", {"reason": INJECTED_REASON}, "003_004"),
        ("Volume.ReimageFailed", {"reason": INJECTED_REASON}, "016_001"),
        ("Volume.NovaNotified", {"outcome": "failed"}, "007_009"),
        ("Volume.NovaReimageNotified", {"outcome": "failed"}, "016_028"),
    ],
)
def test_each_failure_records_cinders_fields(
    name: str, data: dict[str, Any], expected: str
) -> None:
    assert event_id(name, **data) == f"VOLUME_VOLUME_{expected}"


def test_snapshot_failures_are_messages_about_the_snapshot() -> None:
    assert event_id("Snapshot.CreateFailed", reason="x") == "VOLUME_VOLUME_SNAPSHOT_009_013"
    assert event_id("Snapshot.DeleteFailed", reason="x") == "VOLUME_VOLUME_SNAPSHOT_010_016"


@pytest.mark.parametrize("reason", capacity_reasons())
def test_the_drivers_capacity_shortage_is_cinders_no_valid_backend(reason: str) -> None:
    assert event_id("Volume.CreateFailed", reason=reason) == "VOLUME_VOLUME_001_003"
    assert event_id("Volume.MigrationFailed", reason=reason) == "VOLUME_VOLUME_102_003"


def test_only_failures_record_messages() -> None:
    for outcome in ("notified", "partial"):
        assert event_id("Volume.NovaNotified", outcome=outcome) is None
        assert event_id("Volume.NovaReimageNotified", outcome=outcome) is None
    assert event_id("Volume.ReencryptFailed", reason="x") is None  # RetypeFailed follows
    assert event_id("Volume.Extended", new_size_gb=2) is None
    assert set(RULES) <= set(STEPS)
    for name, steps in MESSAGE_STEPS.items():
        assert all(step in STEPS[name] for step in steps), name


def test_user_messages_are_cinders_texts_and_never_ours() -> None:
    assert user_message("007", "010") == "extend volume:Volume Driver failed to extend volume."
    assert user_message("101", "003") == (
        "retype volume:Could not find any available weighted backend."
    )
    assert translate_action("999") == "unknown action"
    assert translate_detail("999") == Detail.UNKNOWN_ERROR[1]
    ours = {a for a in Action.ALL if a[0] >= "100"}
    assert ours == {
        Action.RETYPE_VOLUME,
        Action.MIGRATE_VOLUME,
        Action.REVERT_VOLUME,
        Action.DELETE_VOLUME,
        Action.DETACH_VOLUME,
    }
    assert len({a[0] for a in Action.ALL}) == len(Action.ALL)
    assert len({d[0] for d in Detail.ALL}) == len(Detail.ALL) == 30


SPEC = TableSpec(
    name="messages",
    columns=(
        "id",
        "project_id",
        "request_id",
        "resource_type",
        "resource_uuid",
        "event_id",
        "action_id",
        "detail_id",
        "message_level",
        "event_name",
        "version",
        "created_at",
        "expires_at",
        "deleted",
        "deleted_at",
    ),
    types=("text",) * 15,  # only the statements' text needs them (never run here)
    jsonb=frozenset(),
    defaults={"deleted": False},
)


def fold(*events: ProjectionEvent) -> dict[uuid.UUID, Row]:
    folder = Folder(None, {"messages": SPEC}, STEPS, fresh=True)  # type: ignore[arg-type]
    asyncio.run(folder.fold(list(events)))
    return {key[1]: row for key, row in folder.rows.items() if row is not None}


def event(name: str, version: int, aggregate: uuid.UUID = VOLUME, **data: Any) -> ProjectionEvent:
    return ProjectionEvent(
        name=name,
        aggregate_id=aggregate,
        version=version,
        timestamp=AT + timedelta(seconds=version),
        data=data,
        request_id="req-1",
        request_project_id="project-a",
    )


def test_the_projection_folds_a_message_row_and_its_deletion() -> None:
    failed = event("Volume.ExtendFailed", 4, reason=INJECTED_REASON, status="error_extending")
    mid = message_id(VOLUME, 4)
    assert mid == message_id(VOLUME, 4) != message_id(VOLUME, 5)
    (row,) = fold(failed).values()
    assert row | {} == {
        "id": mid,
        "project_id": "project-a",
        "request_id": "req-1",
        "resource_type": "VOLUME",
        "resource_uuid": VOLUME,
        "event_id": "VOLUME_VOLUME_007_010",
        "action_id": "007",
        "detail_id": "010",
        "message_level": "ERROR",
        "event_name": "Volume.ExtendFailed",
        "version": 4,
        "created_at": AT + timedelta(seconds=4),
        "expires_at": AT + timedelta(seconds=4, days=30),
        "deleted": False,
        "deleted_at": None,
    }
    deleted = fold(failed, event("Volume.MessageDeleted", 5, message_id=str(mid)))[mid]
    assert (deleted["deleted"], deleted["deleted_at"]) == (True, AT + timedelta(seconds=5))
    other = uuid.uuid4()  # another aggregate cannot delete it
    kept = fold(failed, event("Volume.MessageDeleted", 1, other, message_id=str(mid)))[mid]
    assert kept["deleted"] is False
    assert fold(event("Volume.NovaNotified", 6, outcome="partial")) == {}


def test_the_view_is_cinders() -> None:
    mid = str(message_id(VOLUME, 4))
    row = {
        "id": mid,
        "event_id": "VOLUME_VOLUME_007_010",
        "action_id": "007",
        "detail_id": "010",
        "message_level": "ERROR",
        "created_at": AT,
        "expires_at": AT + timedelta(days=30),
        "request_id": "req-1",
        "resource_type": "VOLUME",
        "resource_uuid": str(VOLUME),
    }
    ctx = ViewContext(APIVersion(3, 5), False, frozenset({"member"}), "http://c:8776", "p1")
    assert message_view(row, ctx) == {
        "id": mid,
        "event_id": "VOLUME_VOLUME_007_010",
        "user_message": "extend volume:Volume Driver failed to extend volume.",
        "message_level": "ERROR",
        "created_at": "2026-12-06T12:00:00.000000",
        "guaranteed_until": "2027-01-05T12:00:00.000000",
        "request_id": "req-1",
        "links": [
            {"href": f"http://c:8776/v3/p1/messages/{mid}", "rel": "self"},
            {"href": f"http://c:8776/p1/messages/{mid}", "rel": "bookmark"},
        ],
        "resource_type": "VOLUME",
        "resource_uuid": str(VOLUME),
    }
