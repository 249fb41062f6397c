"""The messages list's query rules (Cinder's MessagesController.index): what each
microversion reads of the query string, and for whom."""

from __future__ import annotations

import uuid

import pytest

from cinderblock.api.context import RequestContext
from cinderblock.api.handlers.messages import parse_message_query
from cinderblock.wire.faults import BadRequest
from cinderblock.wire.microversion import APIVersion

pytestmark = pytest.mark.unit


def ctx(version: str = "3.5", *, admin: bool = False) -> RequestContext:
    return RequestContext(
        request_id=f"req-{uuid.uuid4()}",
        global_request_id=None,
        user_id="u",
        project_id="p",
        roles=frozenset({"admin"} if admin else {"member", "reader"}),
        is_admin=admin,
        version=APIVersion.parse(version),
        base_url="http://cinder",
        project_in_url="p",
    )


def test_below_3_5_the_query_is_ignored() -> None:
    q = parse_message_query({"limit": "1", "event_id": "x", "sort": "id"}, ctx("3.3"))
    assert q is not None
    assert (q.filters, q.limit, q.marker, q.offset) == ({}, None, None, 0)
    assert list(q.sort) == [("created_at", "desc"), ("id", "desc")]
    assert q.project_id == "p"
    everyone = parse_message_query({}, ctx("3.3", admin=True))
    assert everyone is not None
    assert everyone.project_id is None


def test_sort_keys_get_created_at_and_id_in_the_first_direction() -> None:
    q = parse_message_query({"sort": "event_id:asc,request_id"}, ctx())
    assert q is not None
    assert list(q.sort) == [
        ("event_id", "asc"),
        ("request_id", "desc"),
        ("created_at", "asc"),
        ("id", "asc"),
    ]
    q = parse_message_query({"sort_key": "id", "sort_dir": "asc"}, ctx())
    assert q is not None
    assert list(q.sort) == [("id", "asc"), ("created_at", "asc")]
    assert q.limit == 1000  # osapi_max_limit


def test_filters_by_version_and_caller() -> None:
    params = {"event_id": "E", "resource_type~": "VOL", "marker": "m", "offset": "2"}
    q = parse_message_query(params, ctx("3.34"))
    assert q is not None
    assert (dict(q.filters), dict(q.like), q.marker, q.offset) == (
        {"event_id": "E"},
        {"resource_type": "VOL"},
        "m",
        2,
    )
    with pytest.raises(BadRequest, match="Invalid filters resource_type~ are found"):
        parse_message_query(params, ctx("3.33"))
    assert parse_message_query({"colour": "red"}, ctx("3.30")) is None  # no such column
    assert parse_message_query({"colour": "red"}, ctx("3.31", admin=True)) is None
    with pytest.raises(BadRequest, match="Invalid filters colour"):
        parse_message_query({"colour": "red"}, ctx("3.31"))
    # a non-admin's project filter: refused from 3.31, harmless below (scoped anyway)
    with pytest.raises(BadRequest):
        parse_message_query({"project_id": "other"}, ctx("3.31"))
    q = parse_message_query({"project_id": "other"}, ctx("3.30"))
    assert q is not None
    assert (q.project_id, dict(q.filters)) == ("p", {"project_id": "other"})
    admin = parse_message_query({"project_id": "other"}, ctx("3.31", admin=True))
    assert admin is not None
    assert (admin.project_id, dict(admin.filters)) == (None, {"project_id": "other"})
    with pytest.raises(BadRequest, match="not supported yet"):
        parse_message_query({"created_at": "2026-01-01"}, ctx("3.31", admin=True))
