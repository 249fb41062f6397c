"""Telling Nova about an extend: which instances, the outcome rules, one record per extend."""

from __future__ import annotations

import pytest

from cinderblock.domain.errors import StaleCommandError
from cinderblock.domain.nova import (
    ACCEPTED,
    FAILED,
    INSTANCE_NOT_FOUND,
    NO_HOST,
    NOT_SENT,
    NOTIFIED,
    PARTIAL,
    REJECTED,
    USER_MESSAGE,
    outcome_of,
    result_of_code,
)
from cinderblock.domain.status import Status
from cinderblock.domain.volume import Volume
from tests.unit.domain.given import available, recorded, story

pytestmark = pytest.mark.unit

A, B = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


def attached_to(*servers: str | None) -> Volume:
    volume = available(multiattach=True)
    for n, server in enumerate(servers):
        host = None if server else "glance-host"
        volume.attach(
            f"att-{n}", mountpoint="/dev/vdb", mode="rw", instance_uuid=server, host_name=host
        )
    volume.collect_events()
    return volume


def ev(server: str, code: int | None) -> dict[str, object]:
    return {"server_uuid": server, "code": code, "result": result_of_code(code)}


def test_instances_to_notify_are_the_attached_instances_once_without_host_attachments() -> None:
    volume = attached_to(B, None, A)
    assert volume.status == Status.IN_USE
    assert volume.instances_to_notify == [A, B]


@pytest.mark.parametrize(
    ("code", "result"),
    [(200, ACCEPTED), (404, INSTANCE_NOT_FOUND), (422, NO_HOST), (400, REJECTED), (None, NOT_SENT)],
)
def test_result_of_each_per_event_code(code: int | None, result: str) -> None:
    assert result_of_code(code) == result


def test_outcome_rules_follow_cinders_send_events() -> None:
    assert outcome_of([ev(A, 200), ev(B, 200)], answered=True) == NOTIFIED
    assert outcome_of([ev(A, 200), ev(B, 404)], answered=True) == PARTIAL  # a warning
    assert outcome_of([ev(A, 422)], answered=True) == PARTIAL
    assert outcome_of([ev(A, 200), ev(B, None)], answered=True) == FAILED  # a missing code
    assert outcome_of([ev(A, 404)], answered=False) == FAILED  # 404 for the whole request


def test_recording_an_outcome_appends_one_event_and_refuses_a_second_for_that_extend() -> None:
    volume = attached_to(A, B)
    outcome = volume.record_nova_notification(
        7,
        new_size_gb=20,
        events=[ev(A, 200), ev(B, 404)],
        attempts=1,
        http_status=207,
        answered=True,
        reason=f"{B}: instance_not_found (404)",
    )
    assert outcome == PARTIAL
    events = volume.collect_events()
    [(cls, fields)] = recorded(events)
    assert cls is Volume.NovaNotified
    assert fields["extend_version"] == 7
    assert fields["user_message"] is None
    assert [e["result"] for e in fields["events"]] == [ACCEPTED, INSTANCE_NOT_FOUND]
    assert volume.nova_outcome(7) == PARTIAL
    assert volume.nova_outcome(9) is None
    with pytest.raises(StaleCommandError):
        volume.record_nova_notification(
            7,
            new_size_gb=20,
            events=[ev(A, 200)],
            attempts=1,
            http_status=200,
            answered=True,
            reason=None,
        )
    assert volume.collect_events() == []


def test_a_failure_carries_cinders_user_message() -> None:
    volume = attached_to(A)
    volume.record_nova_notification(
        4,
        new_size_gb=2,
        events=[ev(A, None)],
        attempts=3,
        http_status=500,
        answered=False,
        reason="gave up after 3 attempts",
    )
    [(_, fields)] = recorded(volume.collect_events())
    assert fields["outcome"] == FAILED
    assert fields["user_message"] == USER_MESSAGE
    assert fields["attempts"] == 3


def test_a_rebuilt_volume_knows_which_extends_were_notified() -> None:
    told = story(multiattach=True)
    told.volume.attach("att-0", mountpoint="/dev/vdb", mode="rw", instance_uuid=A, host_name=None)
    told.volume.record_nova_notification(
        3,
        new_size_gb=11,
        events=[ev(A, 200)],
        attempts=1,
        http_status=200,
        answered=True,
        reason=None,
    )
    told.new_events()
    rebuilt = told.rebuilt()
    assert rebuilt.nova_outcome(3) == NOTIFIED
    assert rebuilt.nova_outcome(4) is None


def test_a_reimage_notification_is_recorded_once_per_reimage_with_cinders_message() -> None:
    s = story()
    s.volume.create_attachment("att-1", instance_uuid=A, mode=None)
    s.volume.request_reimage(
        {"id": "img", "status": "active", "size": 1, "min_disk": 0}, reimage_reserved=True
    )
    requested = s.new_events()[-1].originator_version
    s.volume.complete_reimage(requested, "00" * 32)
    reimaged = s.new_events()[-1].originator_version
    assert s.volume.instances_to_notify == [A]
    failed = [{"server_uuid": A, "code": None, "result": NOT_SENT}]

    outcome = s.volume.record_nova_reimage_notification(
        reimaged, events=failed, attempts=3, http_status=503, answered=False, reason="down"
    )

    assert outcome == FAILED
    [event] = s.new_events()
    assert isinstance(event, Volume.NovaReimageNotified)
    assert (event.reimage_version, event.user_message) == (
        reimaged,
        "reimage volume:Compute service failed to reimage volume.",
    )
    assert s.rebuilt().nova_reimage_outcome(reimaged) == FAILED
    assert s.volume.nova_outcome(reimaged) is None  # an extend's record is another thing
    with pytest.raises(StaleCommandError):
        s.volume.record_nova_reimage_notification(
            reimaged, events=failed, attempts=1, http_status=None, answered=False, reason=None
        )
