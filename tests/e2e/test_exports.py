"""Attach and detach as driver work (issue 10 part 8), through the HTTP API: the export saga
makes a real export on disk while a volume is attached and removes it on detach; with the
fault injector on, an export that fails is Cinder's 500 with the attachment and the volume
as they were (or the reservation taken back), and an export removal that fails is Cinder's
500 with nothing detached."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from cinderblock.api import app as api
from cinderblock.drivers.file import FileDriver
from tests.e2e.conftest import System
from tests.helpers.cinder import new_type
from tests.helpers.client import CinderClient

COMPUTE_1 = {"host": "compute-1", "mountpoint": "/dev/vdb", "initiator": "iqn.1"}
COMPUTE_2 = {"host": "compute-2", "mountpoint": "/dev/vdc", "initiator": "iqn.2"}
GENERIC_500 = "The server has either erred or is incapable of performing the requested operation."


def files(system: System) -> FileDriver:
    inner = system.driver.inner
    assert isinstance(inner, FileDriver)
    return inner


def export_ids(system: System, volume: dict[str, Any]) -> list[str]:
    return [e["export_id"] for e in system.driver.exports(volume["id"], host_of(volume))]


def host_of(volume: dict[str, Any]) -> str:
    return str(volume["os-vol-host-attr:host"])


async def fresh(system: System, **fields: Any) -> tuple[CinderClient, dict[str, Any]]:
    client = system.client.as_(project_id=uuid.uuid4().hex, version="3.54")
    created = await client.create_volume(1, **fields)
    return client, await system.until_status(created["id"], "available")


async def reserve(client: CinderClient, vid: str, **fields: Any) -> str:
    made = await client.request(
        "POST",
        "/attachments",
        body={"attachment": {"volume_uuid": vid, "instance_uuid": str(uuid.uuid4()), **fields}},
    )
    assert made.status == 200, made.text
    return str(made.json["attachment"]["id"])


async def topics(system: System, vid: str) -> list[str]:
    rows = await system.pool.fetch(
        "SELECT topic FROM events WHERE originator_id = $1 ORDER BY originator_version",
        uuid.UUID(vid),
    )
    return [r["topic"].rpartition(".")[2] for r in rows]


@pytest.fixture
def faults(system: System) -> Any:
    yield system.faults
    system.faults("")


async def test_an_attachment_is_exported_on_disk_while_attached(system: System) -> None:
    client, volume = await fresh(system)
    vid = volume["id"]
    aid = await reserve(client, vid)
    assert export_ids(system, volume) == []

    updated = await client.request(
        "PUT", f"/attachments/{aid}", body={"attachment": {"connector": COMPUTE_1}}
    )

    assert updated.status == 200, updated.text
    info = updated.json["attachment"]["connection_info"]
    assert info["device_path"] == str(system.driver.volume_path(vid, host_of(volume)))
    record_file = files(system).export_dir(vid, host_of(volume)) / f"{aid}.json"
    assert record_file.is_file()
    record = json.loads(record_file.read_text())
    assert (record["identity"], record["connector"]) == ("compute-1", COMPUTE_1)
    assert record["connection_info"]["data"]["device_path"] == info["device_path"]
    done = await client.request("POST", f"/attachments/{aid}/action", body={"os-complete": None})
    assert done.status == 204
    assert export_ids(system, volume) == [aid]  # attached: still exported

    gone = await client.request("DELETE", f"/attachments/{aid}")

    assert (gone.status, gone.json) == (200, {"attachments": []})
    assert not record_file.exists()
    assert (await client.volume(vid) or {})["status"] == "available"
    assert await topics(system, vid) == [
        "Created",
        "CreateCompleted",
        "AttachmentReserved",
        "ExportRequested",
        "ExportCreated",
        "AttachmentConnected",
        "AttachmentCompleted",
        "UnexportRequested",
        "ExportsRemoved",
        "Detached",
    ]


async def test_legacy_connection_is_exported_until_terminated(system: System) -> None:
    client, volume = await fresh(system)
    vid = volume["id"]
    assert (await client.action(vid, {"os-reserve": None})).status == 202

    conn = await client.action(vid, {"os-initialize_connection": {"connector": COMPUTE_1}})

    assert conn.status == 200, conn.text
    assert conn.json["connection_info"]["data"]["device_path"] == str(
        system.driver.volume_path(vid, host_of(volume))
    )
    assert export_ids(system, volume) == ["host-compute-1"]
    again = await client.action(vid, {"os-initialize_connection": {"connector": COMPUTE_1}})
    assert again.json == conn.json  # the same export, not a second one
    assert export_ids(system, volume) == ["host-compute-1"]
    attached = await client.action(
        vid, {"os-attach": {"mountpoint": "/dev/vdb", "instance_uuid": str(uuid.uuid4())}}
    )
    assert attached.status == 202
    assert (await client.action(vid, {"os-begin_detaching": None})).status == 202

    ended = await client.action(vid, {"os-terminate_connection": {"connector": COMPUTE_1}})

    assert ended.status == 202, ended.text
    assert export_ids(system, volume) == []
    assert (await client.action(vid, {"os-detach": {}})).status == 202
    assert (await client.volume(vid) or {})["status"] == "available"


async def test_detach_without_terminate_removes_the_legacy_export(system: System) -> None:
    client, volume = await fresh(system)
    vid = volume["id"]
    await client.action(vid, {"os-initialize_connection": {"connector": COMPUTE_1}})
    await client.action(vid, {"os-attach": {"mountpoint": "/dev/vdb", "host_name": "compute-1"}})
    assert export_ids(system, volume) == ["host-compute-1"]

    detached = await client.action(vid, {"os-detach": {}})

    assert detached.status == 202, detached.text
    assert export_ids(system, volume) == []
    assert (await client.volume(vid) or {})["status"] == "available"


async def test_a_second_exclusive_export_is_refused(system: System) -> None:
    client, volume = await fresh(system)
    vid = volume["id"]
    aid = await reserve(client, vid)
    await client.request(
        "PUT", f"/attachments/{aid}", body={"attachment": {"connector": COMPUTE_1}}
    )

    other = await client.action(vid, {"os-initialize_connection": {"connector": COMPUTE_2}})

    assert other.status == 500
    assert other.json == {
        "computeFault": {
            "code": 500,
            "message": "Unable to fetch connection information from backend.",
        }
    }
    assert export_ids(system, volume) == [aid]


async def test_a_multiattach_volume_is_exported_to_two_hosts(system: System) -> None:
    multi = await new_type(system, extra_specs={"multiattach": "<is> True"})
    client, volume = await fresh(system, volume_type=multi["name"])
    vid = volume["id"]
    made = []
    for connector in (COMPUTE_1, COMPUTE_2):
        aid = await reserve(client, vid)
        put = await client.request(
            "PUT", f"/attachments/{aid}", body={"attachment": {"connector": connector}}
        )
        assert put.status == 200, put.text
        done = await client.request(
            "POST", f"/attachments/{aid}/action", body={"os-complete": None}
        )
        assert done.status == 204
        made.append(aid)
    first, second = made

    assert sorted(export_ids(system, volume)) == sorted([first, second])


async def test_attach_failure_answers_500_and_keeps_the_reservation(
    system: System, faults: Any
) -> None:
    client, volume = await fresh(system)
    vid = volume["id"]
    aid = await reserve(client, vid)
    faults("attach=fail")

    updated = await client.request(
        "PUT", f"/attachments/{aid}", body={"attachment": {"connector": COMPUTE_1}}
    )

    assert updated.status == 500
    assert updated.json == {
        "computeFault": {
            "code": 500,
            "message": "Unable to update attachment (Bad or unexpected response from the "
            "storage volume backend API: Create export for volume failed (injected "
            "failure).).",
        }
    }
    shown = await client.request("GET", f"/attachments/{aid}")
    assert (shown.json["attachment"]["status"], shown.json["attachment"]["connection_info"]) == (
        "reserved",
        {},
    )
    assert (await client.volume(vid) or {})["status"] == "reserved"
    assert export_ids(system, volume) == []
    assert (await topics(system, vid))[-2:] == ["ExportRequested", "ExportFailed"]

    faults("")
    retried = await client.request(
        "PUT", f"/attachments/{aid}", body={"attachment": {"connector": COMPUTE_1}}
    )
    assert (retried.status, retried.json["attachment"]["status"]) == (200, "attaching")


async def test_attach_failure_on_create_takes_the_reservation_back(
    system: System, faults: Any
) -> None:
    client, volume = await fresh(system)
    vid = volume["id"]
    faults("attach=fail")

    made = await client.request(
        "POST",
        "/attachments",
        body={
            "attachment": {
                "volume_uuid": vid,
                "instance_uuid": str(uuid.uuid4()),
                "connector": COMPUTE_1,
            }
        },
    )

    assert made.status == 500
    assert made.json["computeFault"]["message"] == (
        "Unable to create attachment for volume (Bad or unexpected response from the storage "
        "volume backend API: Create export for volume failed (injected failure).)."
    )
    listed = await client.request("GET", f"/attachments?volume_id={vid}")
    assert listed.json["attachments"] == []
    after = await client.volume(vid) or {}
    assert (after["status"], after["attachments"]) == ("available", [])
    assert (await topics(system, vid))[-3:] == ["ExportRequested", "ExportFailed", "Detached"]


async def test_initialize_connection_failure_changes_nothing(system: System, faults: Any) -> None:
    client, volume = await fresh(system)
    vid = volume["id"]
    faults("attach=fail")

    conn = await client.action(vid, {"os-initialize_connection": {"connector": COMPUTE_1}})

    assert conn.status == 500
    assert conn.json["computeFault"]["message"] == (
        "Unable to fetch connection information from backend."
    )
    assert (await client.volume(vid) or {})["status"] == "available"
    assert export_ids(system, volume) == []


async def attached_through_the_api(system: System) -> tuple[CinderClient, dict[str, Any], str]:
    client, volume = await fresh(system)
    aid = await reserve(client, volume["id"])
    put = await client.request(
        "PUT", f"/attachments/{aid}", body={"attachment": {"connector": COMPUTE_1}}
    )
    assert put.status == 200, put.text
    done = await client.request("POST", f"/attachments/{aid}/action", body={"os-complete": None})
    assert done.status == 204
    return client, volume, aid


async def test_detach_failure_on_delete_keeps_the_attachment(system: System, faults: Any) -> None:
    client, volume, aid = await attached_through_the_api(system)
    vid = volume["id"]
    faults("detach=fail")

    gone = await client.request("DELETE", f"/attachments/{aid}")

    assert gone.status == 500
    assert gone.json == {"computeFault": {"code": 500, "message": GENERIC_500}}
    shown = await client.request("GET", f"/attachments/{aid}")
    assert shown.json["attachment"]["status"] == "attached"
    assert (await client.volume(vid) or {})["status"] == "in-use"
    assert export_ids(system, volume) == [aid]
    assert (await topics(system, vid))[-2:] == ["UnexportRequested", "UnexportFailed"]

    faults("")
    again = await client.request("DELETE", f"/attachments/{aid}")
    assert (again.status, again.json) == (200, {"attachments": []})
    assert export_ids(system, volume) == []


async def test_detach_failure_on_os_detach_keeps_the_attachment(
    system: System, faults: Any
) -> None:
    client, volume, aid = await attached_through_the_api(system)
    vid = volume["id"]
    service = client  # no Nova configured: the safety check lets the owner detach
    faults("detach=fail")

    detached = await service.action(vid, {"os-detach": {"attachment_id": aid}})

    assert detached.status == 500, detached.text
    assert detached.json == {"computeFault": {"code": 500, "message": GENERIC_500}}
    after = await client.volume(vid) or {}
    assert (after["status"], [a["attachment_id"] for a in after["attachments"]]) == (
        "in-use",
        [aid],
    )
    terminated = await service.action(vid, {"os-force_detach": {"attachment_id": aid}})
    assert terminated.status == 500
    assert terminated.json["computeFault"]["message"] == (
        "Unable to terminate volume connection from backend."
    )

    faults("")
    assert (await service.action(vid, {"os-force_detach": {"attachment_id": aid}})).status == 202
    after = await client.volume(vid) or {}
    assert (after["status"], after["attachments"]) == ("available", [])
    assert export_ids(system, volume) == []


async def test_an_export_left_by_reset_status_does_not_hold_the_volume(system: System) -> None:
    """os-reset_status to detached drops the attachment but not its export (as Cinder,
    which never asks the backend): the next export removes the stale one first."""
    client, volume, first = await attached_through_the_api(system)
    vid = volume["id"]
    reset = await client.action(
        vid, {"os-reset_status": {"status": "available", "attach_status": "detached"}}
    )
    assert reset.status == 202, reset.text
    assert export_ids(system, volume) == [first]  # left behind

    second = await reserve(client, vid)
    put = await client.request(
        "PUT", f"/attachments/{second}", body={"attachment": {"connector": COMPUTE_2}}
    )

    assert put.status == 200, put.text
    assert export_ids(system, volume) == [second]


@contextlib.asynccontextmanager
async def impatient_api(system: System, read_wait: float) -> AsyncIterator[CinderClient]:
    """A second API on the system's database and sagas that waits ``read_wait`` seconds."""
    settings = system.settings.model_copy(update={"read_wait": read_wait, "port": 0})
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(api.run(settings, stop=stop, ready=ready.set_result))
    try:
        base = await asyncio.wait_for(asyncio.shield(ready), 30)
        async with aiohttp.ClientSession() as session:
            yield CinderClient(session, base, version="3.54")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_saga_slower_than_the_wait_is_cinders_rpc_timeout(
    system: System, faults: Any
) -> None:
    """The reply does not wait longer than the API's bound: Cinder's 500 for an RPC call
    that timed out; the backend finishes the export later and the attachment shows it."""
    client, volume = await fresh(system)
    vid = volume["id"]
    aid = await reserve(client, vid)
    faults("attach=delay:1.5")
    async with impatient_api(system, 0.3) as impatient:
        slow = await impatient.as_(project_id=client.project_id).request(
            "PUT", f"/attachments/{aid}", body={"attachment": {"connector": COMPUTE_1}}
        )

    assert slow.status == 500
    assert slow.json["computeFault"]["message"] == "Unable to update the attachment."

    async def connected() -> bool:
        shown = await client.request("GET", f"/attachments/{aid}")
        return bool(shown.json["attachment"]["status"] == "attaching")

    assert await system.projected.until(connected)
    assert export_ids(system, volume) == [aid]
