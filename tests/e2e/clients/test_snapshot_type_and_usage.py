"""Issue 13 through unmodified clients: a volume created from a snapshot gets the type the
snapshot was taken with, also after its volume was retyped (python-cinderclient's
``volumes.create(snapshot_id=…)``, openstacksdk's ``create_volume(snapshot_id=…)``); another
requested type is refused unless the source volume's type could be retyped to it (Cinder's
text, naming the type's id); the snapshot is billed in ``os-usage`` apart from its volume;
and a snapshot's life through cinderclient (create, update, metadata, reset status, revert,
delete) gives exactly Cinder's snapshot notifications, with ``_usage_from_snapshot``'s
payload."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import nats
import pytest
from cinderclient import exceptions as cinder_exc

from cinderblock.billing.run import notification_stream
from cinderblock.usage.ledger import gib_hours, volume_intervals
from cinderblock.usage.store import EventReader
from tests.e2e.clients.support import SDK_WARNINGS, Cinder, Sdk, until
from tests.e2e.conftest import System
from tests.unit.usage.test_notifications import CINDER_SNAPSHOT_KEYS

pytestmark = SDK_WARNINGS


async def _types(c: Any, *backends: str) -> list[Any]:
    made = []
    for backend in backends:
        vtype = await asyncio.to_thread(
            c.volume_types.create, f"st-{backend}-{uuid.uuid4().hex[:6]}"
        )
        await asyncio.to_thread(vtype.set_keys, {"volume_backend_name": backend})
        made.append(vtype)
    return made


@pytest.mark.parametrize("cinder", ["project-in-url"], indirect=True)
async def test_cinderclient_volume_from_a_snapshot_keeps_the_type_it_was_taken_with(
    system: System, cinder: Cinder
) -> None:
    c = cinder.client
    first, second, elsewhere = await _types(c, "file-a", "file-a", "file-b")

    async def settled(created: Any, busy: str = "creating") -> Any:
        return await until(lambda: c.volumes.get(created.id), lambda v: v.status != busy)

    source = await settled(await asyncio.to_thread(c.volumes.create, 1, volume_type=first.name))
    snap = await asyncio.to_thread(c.volume_snapshots.create, source.id)
    await until(lambda: c.volume_snapshots.get(snap.id), lambda s: s.status == "available")
    await asyncio.to_thread(c.volumes.retype, source, second.name, "never")
    retyped = await settled(source, "retyping")
    assert (retyped.status, retyped.volume_type) == ("available", second.name)

    # No type asked: the snapshot's, not its volume's current one.
    plain = await settled(await asyncio.to_thread(c.volumes.create, 1, snapshot_id=snap.id))
    assert (plain.status, plain.volume_type) == ("available", first.name)

    # Another backend's type: refused (two volume services, another volume_backend_name).
    with pytest.raises(cinder_exc.BadRequest) as refused:
        await asyncio.to_thread(
            c.volumes.create, 1, snapshot_id=snap.id, volume_type=elsewhere.name
        )
    assert refused.value.message == (
        f"Invalid input received: Invalid volume_type provided: {elsewhere.id} (requested "
        "type is not compatible; recommend omitting the type argument)."
    )

    # A type the source volume's type can be retyped to: taken.
    chosen = await settled(
        await asyncio.to_thread(c.volumes.create, 1, snapshot_id=snap.id, volume_type=second.id)
    )
    assert (chosen.status, chosen.volume_type) == ("available", second.name)


@pytest.mark.parametrize("sdk", ["admin_token-project-in-url"], indirect=True)
@pytest.mark.parametrize("cinder", ["project-in-url"], indirect=True)
async def test_sdk_volume_from_a_snapshot_and_the_snapshot_in_os_usage(
    system: System, sdk: Sdk, cinder: Cinder
) -> None:
    bs = sdk.bs
    (first, second) = await _types(cinder.client, "file-a", "file-a")
    since = datetime.now(UTC) - timedelta(seconds=1)

    async def settled(created: Any, busy: str = "creating") -> Any:
        return await until(lambda: bs.get_volume(created.id), lambda v: v.status != busy)

    source = await settled(
        await asyncio.to_thread(bs.create_volume, size=2, volume_type=first.name)
    )
    snap = await asyncio.to_thread(bs.create_snapshot, volume_id=source.id)
    await until(lambda: bs.get_snapshot(snap.id), lambda s: s.status == "available")
    await asyncio.to_thread(bs.retype_volume, source, second.name, "never")
    await settled(source, "retyping")
    made = await settled(await asyncio.to_thread(bs.create_volume, snapshot_id=snap.id))
    assert (made.status, made.volume_type, made.size) == ("available", first.name, 2)

    await asyncio.to_thread(bs.delete_snapshot, snap)
    gone = uuid.UUID(snap.id)

    async def deleted_in_the_ledger() -> bool:
        last = await system.pool.fetchval(
            "SELECT max(originator_version) FROM events WHERE originator_id = $1", gone
        )
        applied = await system.pool.fetchval(
            "SELECT version FROM billing_volumes WHERE volume_id = $1", gone
        )
        return bool(last and last >= 4 and applied == last)

    await system.projected.until(deleted_in_the_ledger)
    until_ = datetime.now(UTC) + timedelta(seconds=1)
    project = sdk.project_id
    reply = await system.client.request(
        "GET",
        f"/os-usage/{project}?since={since.isoformat()}&until={until_.isoformat()}".replace(
            "+", "%2B"
        ),
    )
    assert reply.status == 200, reply.text
    body = reply.json["usage"]
    (row,) = [r for r in body["snapshots"] if r["snapshot_id"] == snap.id]
    assert (row["volume_id"], row["volume_type_id"]) == (source.id, first.id)
    events = await EventReader().events_of(system.pool, gone, 10_000)
    expected = gib_hours(volume_intervals(snap.id, events), since, until_)
    assert expected > 0
    assert row["gib_hours"] == pytest.approx(float(expected), abs=1e-6)
    assert snap.id not in {v["volume_id"] for v in body["volumes"]}
    assert body["snapshot_gib_hours"] == pytest.approx(
        float(sum(Decimal(str(r["gib_hours"])) for r in body["snapshots"])), abs=1e-5
    )
    assert body["total_gib_hours"] == pytest.approx(
        body["volume_gib_hours"] + body["snapshot_gib_hours"], abs=1e-5
    )


async def _notes_of(system: System, snapshot_id: str, last: str) -> list[dict[str, Any]]:
    """The snapshot's notifications on the notification stream, in order, up to ``last``."""
    nc = await nats.connect(system.settings.nats_url)
    seen: list[dict[str, Any]] = []
    try:
        sub = await nc.jetstream().subscribe(
            system.settings.subject("notifications.*.snapshot.>"),
            stream=notification_stream(system.settings).name,
            ordered_consumer=True,
        )
        async with asyncio.timeout(20):
            while not seen or seen[-1]["event_type"] != last:
                note = json.loads((await sub.next_msg(timeout=15)).data)
                if note["payload"]["snapshot_id"] == snapshot_id:
                    seen.append(note)
    finally:
        await nc.close()
    return seen


@pytest.mark.parametrize("cinder", ["project-in-url"], indirect=True)
async def test_cinderclient_snapshot_life_is_notified_as_cinder_does(
    system: System, cinder: Cinder
) -> None:
    c = cinder.client
    created = await asyncio.to_thread(c.volumes.create, 1)
    volume = await until(lambda: c.volumes.get(created.id), lambda v: v.status == "available")
    snap = await asyncio.to_thread(c.volume_snapshots.create, volume.id, name="first")
    await until(lambda: c.volume_snapshots.get(snap.id), lambda s: s.status == "available")
    await asyncio.to_thread(c.volume_snapshots.update, snap, name="second")
    await asyncio.to_thread(c.volume_snapshots.set_metadata, snap, {"k": "v"})  # no notification
    await asyncio.to_thread(c.volume_snapshots.reset_state, snap, "error")
    await asyncio.to_thread(c.volume_snapshots.reset_state, snap, "available")
    await asyncio.to_thread(c.volumes.revert_to_snapshot, volume, snap)
    await until(lambda: c.volumes.get(volume.id), lambda v: v.status == "available")
    await until(lambda: c.volume_snapshots.get(snap.id), lambda s: s.status == "available")
    await asyncio.to_thread(c.volume_snapshots.delete, snap)

    notes = await _notes_of(system, snap.id, "snapshot.delete.end")
    assert [n["event_type"] for n in notes] == [
        "snapshot.create.start",
        "snapshot.create.end",
        "snapshot.update.start",
        "snapshot.update.end",
        "snapshot.reset_status.start",
        "snapshot.reset_status.end",
        "snapshot.reset_status.start",
        "snapshot.reset_status.end",
        "snapshot.revert.start",
        "snapshot.revert.end",
        "snapshot.delete.start",
        "snapshot.delete.end",
    ]
    for n in notes:
        assert set(n["payload"]) == CINDER_SNAPSHOT_KEYS
        assert n["payload"]["volume_id"] == volume.id
        assert n["payload"]["tenant_id"] == cinder.project_id
        assert n["payload"]["availability_zone"] == system.settings.default_availability_zone
    by_type = {n["event_type"]: n["payload"] for n in notes}
    assert by_type["snapshot.update.start"]["display_name"] == "first"
    assert by_type["snapshot.update.end"]["display_name"] == "second"
    deleted = by_type["snapshot.delete.end"]
    assert (deleted["status"], deleted["deleted"]) == ("deleted", "True")
    assert by_type["snapshot.delete.end"]["metadata"] == str({"k": "v"})
