"""The Nova notifier against a Nova-shaped test server: an extend of an in-use volume (3.42)
tells Nova once per attached instance, whatever Nova answers the extend stands, and the
outcome is an event on the volume."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import nats.js.errors
import pytest
import pytest_asyncio

from cinderblock.bus.jetstream import ensure_consumer
from cinderblock.notifier import run as notifier
from tests.e2e.conftest import System
from tests.helpers.cinder import image_of, new_type
from tests.helpers.fake_nova import FakeNova

TOKEN = "cinderblock-service:service-project"
TOPIC = "cinderblock.domain.volume:Volume.NovaNotified"


@pytest_asyncio.fixture(scope="module")
async def nova(system: System) -> AsyncIterator[FakeNova]:
    """The test server, and the notifier service (as `cinderblock serve notifier` runs it)
    pointed at it, beside the system's other services."""
    fake = FakeNova()
    url = await fake.start()
    settings = system.settings.model_copy(
        update={
            "nova_url": url,
            "nova_token": TOKEN,
            "nova_timeout": 0.5,
            "nova_attempts": 3,
            "nova_backoff": 0.05,
        }
    )
    # The durable delivers only what is published after it exists: make it now.
    nc = await nats.connect(settings.nats_url)
    await ensure_consumer(nc.jetstream(), notifier.consumer_spec(settings))
    await nc.close()
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(settings, stop=stop))
    try:
        yield fake
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await fake.stop()


async def attached_volume(system: System, *servers: str) -> dict[str, Any]:
    """An available 1 GiB volume attached to ``servers`` (multiattach when several)."""
    fields: dict[str, Any] = {}
    if len(servers) > 1:
        multi = await new_type(system, extra_specs={"multiattach": "<is> True"})
        fields["volume_type"] = multi["id"]
    volume = await system.available_volume(1, **fields)
    for server in servers:
        body = {"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdb"}}
        assert (await system.client.action(volume["id"], body)).status == 202
    return volume


async def extend_in_use(system: System, volume_id: str, new_size: int) -> None:
    reply = await system.client.as_(version="3.42").action(
        volume_id, {"os-extend": {"new_size": new_size}}
    )
    assert reply.status == 202, reply.text
    done = await system.until_volume(
        volume_id, lambda v: v is not None and v["status"] == "in-use" and v["size"] == new_size
    )
    assert done is not None


async def notified(system: System, volume_id: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every NovaNotified of the volume (state, meta), waited for until there is one."""

    async def check() -> list[tuple[dict[str, Any], dict[str, Any]]]:
        rows = await system.pool.fetch(
            "SELECT state, meta::text AS meta FROM events "
            "WHERE originator_id = $1 AND topic = $2 ORDER BY originator_version",
            uuid.UUID(volume_id),
            TOPIC,
        )
        return [(json.loads(r["state"]), json.loads(r["meta"])) for r in rows]

    found = await system.projected.until(check)
    assert found
    return found  # type: ignore[no-any-return]


async def until_notifier_passed(system: System, volume_id: str) -> None:
    """The notifier's durable has acked the volume's Extended message (and all before it)."""
    await until_notifier_passed_subject(system, f"volume.events.Extended.{volume_id}")


async def extended_version(system: System, volume_id: str) -> int:
    version = await system.pool.fetchval(
        "SELECT max(originator_version) FROM events WHERE originator_id = $1 "
        "AND topic = 'cinderblock.domain.volume:Volume.Extended'",
        uuid.UUID(volume_id),
    )
    assert version is not None
    return int(version)


async def test_200_tells_nova_once_per_instance_at_2_51(system: System, nova: FakeNova) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    volume = await attached_volume(system, a, b)
    await extend_in_use(system, volume["id"], 2)
    [(event, meta)] = await notified(system, volume["id"])
    [request] = nova.requests_for(volume["id"])
    assert request.path == "/v2.1/os-server-external-events"
    assert request.headers["X-OpenStack-Nova-API-Version"] == "2.51"
    assert request.headers["OpenStack-API-Version"] == "compute 2.51"
    assert request.headers["X-Auth-Token"] == TOKEN
    assert request.headers["Content-Type"].startswith("application/json")
    sent = sorted(request.body["events"], key=lambda e: e["server_uuid"])
    assert sent == sorted(
        [{"name": "volume-extended", "server_uuid": s, "tag": volume["id"]} for s in (a, b)],
        key=lambda e: e["server_uuid"],
    )
    assert event["outcome"] == "notified"
    assert event["new_size_gb"] == 2
    assert event["extend_version"] == await extended_version(system, volume["id"])
    assert event["attempts"] == 1
    assert event["http_status"] == 200
    assert event["user_message"] is None
    assert {e["server_uuid"]: (e["code"], e["result"]) for e in event["events"]} == {
        a: (200, "accepted"),
        b: (200, "accepted"),
    }
    assert meta["actor"] == "notifier:nova"
    # the extend request's id travels on as Nova's global request id
    assert request.headers["X-OpenStack-Request-ID"] == (
        meta["global_request_id"] or meta["request_id"]
    )
    assert meta["request_id"].startswith("req-")
    assert meta["causation_id"] == f"{volume['id']}:{event['extend_version']}"
    shown = await system.client.volume(volume["id"])
    assert shown is not None
    assert (shown["status"], shown["size"]) == ("in-use", 2)


async def test_207_records_each_instances_code_as_partial(system: System, nova: FakeNova) -> None:
    ok, gone, hostless = (str(uuid.uuid4()) for _ in range(3))
    volume = await attached_volume(system, ok, gone, hostless)
    nova.answer(volume["id"], "codes", codes={gone: 404, hostless: 422})
    await extend_in_use(system, volume["id"], 3)
    [(event, _)] = await notified(system, volume["id"])
    assert len(nova.requests_for(volume["id"])) == 1  # per-event failures are not retried
    assert event["outcome"] == "partial"
    assert event["http_status"] == 207
    assert event["user_message"] is None  # Cinder only logs per-event failures
    assert {e["server_uuid"]: (e["code"], e["result"]) for e in event["events"]} == {
        ok: (200, "accepted"),
        gone: (404, "instance_not_found"),
        hostless: (422, "no_host"),
    }
    assert gone in event["reason"]
    assert hostless in event["reason"]
    shown = await system.client.volume(volume["id"])
    assert shown is not None
    assert (shown["status"], shown["size"]) == ("in-use", 3)


async def test_404_for_the_whole_request_fails_with_a_user_message_and_the_extend_stays(
    system: System, nova: FakeNova
) -> None:
    server = str(uuid.uuid4())
    volume = await attached_volume(system, server)
    nova.answer(volume["id"], "not_found")
    await extend_in_use(system, volume["id"], 2)
    [(event, _)] = await notified(system, volume["id"])
    assert len(nova.requests_for(volume["id"])) == 1  # a 404 is final
    assert event["outcome"] == "failed"
    assert event["http_status"] == 404
    assert event["events"] == [{"server_uuid": server, "code": 404, "result": "instance_not_found"}]
    assert event["user_message"] == "extend volume:Compute service failed to extend volume."
    assert "404" in event["reason"]
    shown = await system.client.volume(volume["id"])
    assert shown is not None
    assert (shown["status"], shown["size"]) == ("in-use", 2)


async def test_500_then_200_is_retried_and_notified(system: System, nova: FakeNova) -> None:
    server = str(uuid.uuid4())
    volume = await attached_volume(system, server)
    nova.answer(volume["id"], "flaky", failures=1)
    await extend_in_use(system, volume["id"], 2)
    [(event, _)] = await notified(system, volume["id"])
    first, second = nova.requests_for(volume["id"])
    assert first.body == second.body  # the same events again
    assert event["outcome"] == "notified"
    assert (event["attempts"], event["http_status"]) == (2, 200)


@pytest.mark.parametrize("mode", ["hang", "flaky"])
async def test_no_answer_or_only_5xx_gives_up_after_the_attempts(
    system: System, nova: FakeNova, mode: str
) -> None:
    server = str(uuid.uuid4())
    volume = await attached_volume(system, server)
    nova.answer(volume["id"], mode, failures=99)
    await extend_in_use(system, volume["id"], 2)
    [(event, _)] = await notified(system, volume["id"])
    assert len(nova.requests_for(volume["id"])) == 3  # nova_attempts, then no more
    assert event["outcome"] == "failed"
    assert event["attempts"] == 3
    assert event["events"] == [{"server_uuid": server, "code": None, "result": "not_sent"}]
    assert event["user_message"] == "extend volume:Compute service failed to extend volume."
    if mode == "hang":
        assert event["http_status"] is None
        assert "no answer within 0.5s" in event["reason"]
    else:
        assert event["http_status"] == 500
    shown = await system.client.volume(volume["id"])
    assert shown is not None
    assert (shown["status"], shown["size"]) == ("in-use", 2)


async def test_extends_of_volumes_without_instances_tell_nova_nothing(
    system: System, nova: FakeNova
) -> None:
    volume = await system.available_volume(1)
    host_only = {"os-attach": {"host_name": "glance-node", "mountpoint": "/mnt/v"}}
    assert (await system.client.action(volume["id"], host_only)).status == 202
    await extend_in_use(system, volume["id"], 2)
    await until_notifier_passed(system, volume["id"])
    assert nova.requests_for(volume["id"]) == []
    rows = await system.pool.fetchval(
        "SELECT count(*) FROM events WHERE originator_id = $1 AND topic = $2",
        uuid.UUID(volume["id"]),
        TOPIC,
    )
    assert rows == 0


async def test_reimage_of_a_reserved_volume_tells_nova_volume_reimaged(
    system: System, nova: FakeNova
) -> None:
    """Nova's rebuild holds the volume reserved and waits for ``volume-reimaged`` (2.93);
    a reimage of a volume that is not reserved tells nobody (Cinder's manager)."""
    c = system.client.as_(project_id=uuid.uuid4().hex, version="3.68")
    image_id = await image_of(system, c)
    server = str(uuid.uuid4())
    vid = (await c.create_volume(1))["id"]
    await system.until_status(vid, "available")
    body = {"attachment": {"volume_uuid": vid, "instance_uuid": server}}
    assert (await c.request("POST", "/attachments", body=body)).status == 200
    reimage = {"os-reimage": {"image_id": image_id, "reimage_reserved": True}}
    assert (await c.action(vid, reimage)).status == 202

    await nova.until_requests(vid, 1)

    [request] = nova.requests_for(vid)
    assert request.body == {
        "events": [{"name": "volume-reimaged", "server_uuid": server, "tag": vid}]
    }
    assert request.headers["X-OpenStack-Nova-API-Version"] == "2.93"
    assert request.headers["X-Auth-Token"] == TOKEN

    async def recorded() -> dict[str, Any] | None:
        state = await system.pool.fetchval(
            "SELECT state FROM events WHERE originator_id = $1 AND topic = $2",
            uuid.UUID(vid),
            "cinderblock.domain.volume:Volume.NovaReimageNotified",
        )
        return None if state is None else dict(json.loads(state))

    found = await system.projected.until(recorded)
    assert found["outcome"] == "notified"
    assert found["events"] == [{"server_uuid": server, "code": 200, "result": "accepted"}]
    assert found["user_message"] is None

    plain = (await c.create_volume(1))["id"]
    await system.until_status(plain, "available")
    assert (await c.action(plain, {"os-reimage": {"image_id": image_id}})).status == 202
    await system.until_volume(plain, lambda v: v is not None and v["status"] == "available")
    await until_notifier_passed_subject(system, f"volume.events.Reimaged.{plain}")
    assert nova.requests_for(plain) == []


async def until_notifier_passed_subject(system: System, subject: str) -> None:
    """The notifier's durable has acked the last message on ``subject`` (and all before)."""
    spec = notifier.consumer_spec(system.settings)
    nc = await nats.connect(system.settings.nats_url)
    try:
        js = nc.jetstream()
        full = system.settings.subject(subject)

        async def passed() -> bool:
            try:
                msg = await js.get_last_msg(spec.stream, full)
            except nats.js.errors.NotFoundError:
                return False  # not relayed yet
            info = await js.consumer_info(spec.stream, spec.durable)
            return info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= msg.seq

        await system.projected.until(passed)
    finally:
        await nc.close()
