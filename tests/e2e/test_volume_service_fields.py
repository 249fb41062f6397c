"""``shared_targets`` and ``service_uuid`` (3.48+) as Nova and os-brick read them (issue 9):
a placed volume names the cinder-volume service that owns its backend and the backend's
``shared_targets`` (the file backend: false, never null, so os-brick takes no lock)."""

from __future__ import annotations

import uuid

from cinderblock.wire.views import SERVICE_NAMESPACE
from tests.e2e.conftest import System
from tests.helpers.cinder import new_type, retyped


def owning_service(host: str) -> str:
    """Cinder's volume service of ``host@backend#pool`` is the one of ``host@backend``."""
    return str(uuid.uuid5(SERVICE_NAMESPACE, host.partition("#")[0]))


async def test_placed_volumes_name_their_backend_service(system: System) -> None:
    on_a = await new_type(system, extra_specs={"volume_backend_name": "file-a"})
    on_b = await new_type(system, extra_specs={"volume_backend_name": "file-b"})
    client = system.client.as_(project_id=uuid.uuid4().hex, version="3.69")
    created = await client.create_volume(1, volume_type=on_a["name"])
    # Not on a backend yet: Cinder's 3.69 sample shows null for both.
    assert (created["shared_targets"], created["service_uuid"]) == (None, None)
    first = await system.until_status(created["id"], "available")
    second = await system.available_volume(1, volume_type=on_a["name"])
    other = await system.available_volume(1, volume_type=on_b["name"])

    seen: dict[str, set[str]] = {}
    for volume in (first, second, other):
        host = volume["os-vol-host-attr:host"]
        for version in ("3.48", "3.69", "3.71"):
            shown = (await system.client.as_(version=version).show(volume["id"])).json["volume"]
            assert shown["shared_targets"] is False, (version, shown)
            assert shown["service_uuid"] == owning_service(host), (version, shown)
            seen.setdefault(host.partition("@")[2].partition("#")[0], set()).add(
                shown["service_uuid"]
            )
        old = (await system.client.as_(version="3.47").show(volume["id"])).json["volume"]
        assert not {"shared_targets", "service_uuid"} & set(old)
    # one service per backend, and the two backends are two services
    assert {backend: len(ids) for backend, ids in seen.items()} == {"file-a": 1, "file-b": 1}
    assert seen["file-a"] != seen["file-b"]

    # The list views say the same, and the service is one os-services reports.
    listed = await client.request("GET", "/volumes/detail")  # the project holds only ``first``
    assert [(v["shared_targets"], v["service_uuid"]) for v in listed.json["volumes"]] == [
        (False, owning_service(first["os-vol-host-attr:host"]))
    ]
    services = await system.client.request("GET", "/os-services?binary=cinder-volume")
    hosts = {s["host"] for s in services.json["services"]}
    assert first["os-vol-host-attr:host"].partition("#")[0] in hosts

    # A volume moved to another backend is owned by that backend's service (Cinder sets the
    # destination service's uuid when a migration completes).
    body = {"os-retype": {"new_type": on_b["name"], "migration_policy": "on-demand"}}
    assert (await client.action(first["id"], body)).status == 202
    moved = await retyped(system, first["id"])
    assert "@file-b#" in moved["os-vol-host-attr:host"]
    shown = (await client.show(first["id"])).json["volume"]
    assert shown["service_uuid"] == owning_service(other["os-vol-host-attr:host"])
    assert shown["shared_targets"] is False
