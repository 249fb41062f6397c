"""PendingOperation (`cinderblock.domain.pending`): one shape for every flow handed to a
saga, one rule for "is the request made at version V still pending", the same operations
after replay and in an aggregate snapshot, and the dicts the volume showed before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.domain import Snapshot

from cinderblock.domain.errors import StaleCommandError
from cinderblock.domain.pending import (
    MANY,
    ExportPayload,
    ExtendPayload,
    Kind,
    MigrationPayload,
    PendingOperation,
    ReimagePayload,
    RetypePayload,
    RevertPayload,
    UnexportPayload,
    UploadPayload,
)
from cinderblock.domain.volume import Volume
from cinderblock.store.mapping import make_mapper
from tests.unit.domain.given import HOST, VOLUME_ID, replay, state, volume_fields

pytestmark = pytest.mark.unit

IMAGE = {"id": "img-1", "status": "active", "size": 1, "name": "cirros", "disk_format": "raw"}


def extend(v: Volume) -> None:
    v.request_extend(20, in_use_allowed=False, reservation_id="res-1")


def migrate(v: Volume) -> None:
    v.start_migration("node2@file-b", force_host_copy=False, lock_volume=False)


def retype(v: Volume) -> None:
    v.request_retype(
        "type-2", "ssd", new_multiattach=False, migration_policy="never", reservation_id="res-2"
    )


def revert(v: Volume) -> None:
    v.take_snapshot("snap-1", force=False, in_use_ok=False)
    v.request_revert("snap-1", v.size_gb)


def upload(v: Volume) -> None:
    v.request_upload(
        "img-9",
        image_name="backup",
        disk_format="raw",
        container_format="bare",
        visibility="private",
        protected=False,
        force=False,
    )


def reimage(v: Volume) -> None:
    v.request_reimage(IMAGE, reimage_reserved=False)


REQUESTS: dict[Kind, tuple[Callable[[Volume], None], PendingOperation[Any]]] = {
    Kind.EXTEND: (extend, PendingOperation(Kind.EXTEND, 0, ExtendPayload(20), "res-1")),
    Kind.MIGRATION: (
        migrate,
        PendingOperation(Kind.MIGRATION, 0, MigrationPayload("node2@file-b", HOST)),
    ),
    Kind.RETYPE: (
        retype,
        PendingOperation(Kind.RETYPE, 0, RetypePayload("type-2", "ssd", "never", False), "res-2"),
    ),
    Kind.REVERT: (revert, PendingOperation(Kind.REVERT, 0, RevertPayload("snap-1"))),
    Kind.UPLOAD: (upload, PendingOperation(Kind.UPLOAD, 0, UploadPayload("img-9"))),
    Kind.REIMAGE: (
        reimage,
        PendingOperation(
            Kind.REIMAGE,
            0,
            ReimagePayload(
                "img-1",
                {
                    "image_id": "img-1",
                    "image_name": "cirros",
                    "disk_format": "raw",
                    "size": "1",
                },
            ),
        ),
    ),
}


# Kinds pending one at a time (exports and unexports: several at once, tested below).
SINGLE = [k for k in Kind if k not in MANY]


def requested(kind: Kind) -> tuple[Volume, int, list[Any]]:
    """An available volume (its history kept) that asked for ``kind``: it, the request's
    version and every event."""
    volume = Volume.create(VOLUME_ID, **volume_fields())
    volume.complete_create(HOST)
    REQUESTS[kind][0](volume)
    events = volume.collect_events()
    return volume, events[-1].originator_version, events


@pytest.mark.parametrize("kind", SINGLE)
def test_a_request_starts_one_typed_operation_at_its_version(kind: Kind) -> None:
    volume, version, _ = requested(kind)

    expected = REQUESTS[kind][1]
    op = volume.pending_of(kind)
    assert op == PendingOperation(kind, version, expected.payload, expected.reservation_id)
    assert list(volume.pending_operations) == [kind]


@pytest.mark.parametrize("kind", SINGLE)
def test_the_rule_finds_the_request_only_at_its_version(kind: Kind) -> None:
    volume, version, _ = requested(kind)

    assert volume.pending_at(kind, version) is volume.pending_of(kind)
    assert volume.pending_at(kind, version - 1) is None
    assert volume.pending_at(kind, version + 1) is None
    other = next(k for k in Kind if k != kind)
    assert volume.pending_at(other, version) is None
    with pytest.raises(StaleCommandError):
        volume.require_pending(kind, version + 1)


@pytest.mark.parametrize("kind", SINGLE)
def test_replay_rebuilds_the_same_operation(kind: Kind) -> None:
    volume, version, events = requested(kind)

    rebuilt = replay(events)

    assert rebuilt.pending_operations == volume.pending_operations
    assert state(rebuilt) == state(volume)
    assert rebuilt.pending_at(kind, version) == volume.pending_at(kind, version)


@pytest.mark.parametrize("kind", SINGLE)
def test_an_aggregate_snapshot_keeps_the_operation(kind: Kind) -> None:
    volume, version, _ = requested(kind)
    mapper = make_mapper()

    stored = mapper.to_stored_event(Snapshot.take(volume))
    restored = mapper.to_domain_event(stored).mutate(None)

    assert restored.pending_at(kind, version) == volume.pending_of(kind)


@pytest.mark.parametrize("kind", SINGLE)
def test_pending_kind_shows_the_dict_the_volume_held_before(kind: Kind) -> None:
    volume, version, _ = requested(kind)
    op = volume.pending_of(kind)
    assert op is not None

    legacy = getattr(volume, f"pending_{kind}")

    fields = dict(vars(op.payload))
    if op.reservation_id is not None:
        fields["reservation_id"] = op.reservation_id
    assert legacy == fields | {"request_version": version}
    for other in SINGLE:
        if other != kind:
            assert getattr(volume, f"pending_{other}") is None


def test_the_operation_ends_with_its_outcome() -> None:
    volume, version, _ = requested(Kind.EXTEND)

    assert volume.complete_extend(version) == "res-1"

    assert volume.pending_at(Kind.EXTEND, version) is None
    assert volume.pending_extend is None
    assert volume.pending_operations == {}
    with pytest.raises(StaleCommandError, match=rf"pending at {version}\.$"):
        volume.complete_extend(version)


def test_a_migration_runs_beside_another_operation() -> None:
    volume, migration_version, _ = requested(Kind.MIGRATION)
    extend(volume)
    (extend_requested,) = volume.collect_events()

    assert volume.pending_at(Kind.MIGRATION, migration_version) is not None
    assert volume.pending_at(Kind.EXTEND, extend_requested.originator_version) is not None
    volume.complete_extend(extend_requested.originator_version)
    assert volume.pending_at(Kind.MIGRATION, migration_version) is not None


def test_is_for_compares_kind_and_version() -> None:
    op = PendingOperation(Kind.UPLOAD, 7, UploadPayload("img"))
    assert op.is_for(Kind.UPLOAD, 7)
    assert not op.is_for(Kind.UPLOAD, 8)
    assert not op.is_for(Kind.REIMAGE, 7)


def test_reservation_of_an_operation_without_one_is_refused() -> None:
    assert PendingOperation(Kind.EXTEND, 2, ExtendPayload(5), "r").reservation == "r"
    with pytest.raises(StaleCommandError):
        _ = PendingOperation(Kind.UPLOAD, 2, UploadPayload("img")).reservation


@pytest.mark.parametrize("kind", SINGLE)
def test_state_round_trip(kind: Kind) -> None:
    op = REQUESTS[kind][1]
    assert PendingOperation.from_state(op.to_state()) == op


CONNECTOR = {"host": "compute-1", "initiator": "iqn.1993-08.org.debian:01:c1"}
OTHER = {"host": "compute-2"}


def exporting() -> tuple[Volume, int, int, list[Any]]:
    """An available volume with two legacy export requests pending (two connectors)."""
    volume = Volume.create(VOLUME_ID, **volume_fields())
    volume.complete_create(HOST)
    first = volume.request_connection(CONNECTOR)
    second = volume.request_connection(OTHER)
    return volume, first, second, volume.collect_events()


def test_several_exports_are_pending_at_once_each_at_its_version() -> None:
    volume, first, second, _ = exporting()

    ops = volume.pending_all(Kind.EXPORT)
    assert [op.request_version for op in ops] == [first, second]
    assert volume.pending_at(Kind.EXPORT, first) == PendingOperation(
        Kind.EXPORT, first, ExportPayload("host-compute-1", None, CONNECTOR, "rw", False)
    )
    assert volume.pending_at(Kind.EXPORT, second) is ops[1]
    assert volume.pending_at(Kind.UNEXPORT, first) is None
    assert volume.export_request(first) == {
        "export_id": "host-compute-1",
        "attachment_id": None,
        "connector": CONNECTOR,
        "mode": "rw",
        "reserved": False,
    }


def test_an_export_ends_with_its_own_outcome_only() -> None:
    volume, first, second, _ = exporting()

    volume.complete_export(second, {"driver_volume_type": "local", "data": {}})

    assert volume.pending_at(Kind.EXPORT, second) is None
    assert volume.pending_at(Kind.EXPORT, first) is not None
    volume.fail_export(first, "refused")
    assert volume.pending_all(Kind.EXPORT) == []
    with pytest.raises(StaleCommandError):
        volume.fail_export(first, "again")


def test_replay_and_a_snapshot_keep_the_pending_exports_and_unexports() -> None:
    volume, first, second, events = exporting()
    volume.complete_export(first, {"driver_volume_type": "local", "data": {}})
    unexport = volume.request_terminate_connection(CONNECTOR)
    assert unexport is not None
    events += volume.collect_events()

    rebuilt = replay(events)
    stored = make_mapper().to_stored_event(Snapshot.take(volume))
    restored = make_mapper().to_domain_event(stored).mutate(None)

    for again in (rebuilt, restored):
        assert again.pending_operations == volume.pending_operations
        assert again.pending_at(Kind.UNEXPORT, unexport) == PendingOperation(
            Kind.UNEXPORT, unexport, UnexportPayload(["host-compute-1"], "terminate", None)
        )
        assert again.pending_at(Kind.EXPORT, second) is not None
        assert again.pending_at(Kind.EXPORT, first) is None
