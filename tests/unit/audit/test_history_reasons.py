"""`history` says why: the reason a failure recorded and the user message it left, beside
what it changed, and the API's refusals of changes interleaved by time (reads left out)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from cinderblock.audit.cadf import RequestFacts
from cinderblock.audit.history import render_table, volume_history
from cinderblock.audit.log import LoggedEvent
from cinderblock.domain.volume import Volume
from cinderblock.readmodels.messages import message_id
from tests.unit.domain.given import HOST, VOLUME_ID, volume_fields

pytestmark = pytest.mark.unit

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def logged(volume: object) -> list[LoggedEvent]:
    events = volume.collect_events()  # type: ignore[attr-defined]
    return [
        LoggedEvent(
            position=n,
            aggregate_id=e.originator_id,
            version=e.originator_version,
            name=f"Volume.{type(e).__name__}",
            event=e,
            meta={"actor": "saga:extend", "request_id": "req-x"},
            recorded_at=e.timestamp,
        )
        for n, e in enumerate(events, 1)
    ]


def refusal(at: datetime, method: str, target: str) -> RequestFacts:
    return RequestFacts(
        at=at,
        request_id="req-no",
        target_id=target,
        status=400,
        method=method,
        action="os-extend" if method == "POST" else None,
        route="/v3/{project_id}/volumes/{volume_id}",
        fault="Invalid input received: New size for extend must be greater than current size.",
        user_id="alice",
        project_id="p",
    )


def test_a_failure_shows_its_reason_and_message_and_refusals_are_interleaved() -> None:
    volume = Volume.create(VOLUME_ID, **volume_fields())
    volume.complete_create(HOST)
    volume.request_extend(11, in_use_allowed=False, reservation_id="r")
    volume.fail_extend(volume.version, "injected failure", restore=False)
    own = logged(volume)
    vid = str(volume.id)
    between = own[2].timestamp + (own[3].timestamp - own[2].timestamp) / 2
    refused = [
        refusal(between, "POST", vid),
        refusal(between + timedelta(microseconds=1), "GET", vid),  # a read: not a change
    ]
    rows = volume_history(own, (), refused)
    assert [r.event for r in rows] == [
        "Volume.Created",
        "Volume.CreateCompleted",
        "Volume.ExtendRequested",
        "refused os-extend (400)",
        "Volume.ExtendFailed",
    ]
    _, _, requested, no, failed = rows
    assert (requested.reason, requested.message) == (None, None)
    assert (no.version, no.aggregate, no.actor) == (None, "volume", "alice (p)")
    assert no.reason is not None
    assert no.reason.startswith("Invalid input received")
    assert failed.reason == "injected failure"
    assert failed.message == {
        "id": str(message_id(volume.id, failed.version or 0)),
        "event_id": "VOLUME_VOLUME_007_010",
        "user_message": "extend volume:Volume Driver failed to extend volume.",
    }
    assert failed.as_json()["reason"] == "injected failure"
    assert failed.as_json()["user_message"] == failed.message
    table = render_table(rows).splitlines()
    assert table[0].split()[-2:] == ["CHANGES", "REASON"]
    assert table[4].split()[2] == "-"  # the refusal has no version
    assert table[4].endswith(no.reason)
    assert table[5].endswith("injected failure [VOLUME_VOLUME_007_010]")
    assert "status: extending → error_extending" in table[5]
    assert uuid.UUID(failed.message["id"])
