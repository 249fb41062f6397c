"""Nova's own Cinder client against the running service (issue 9): ``nova.volume.cinder.API``
driven through the call sequences of nova-api and nova-compute, each answer handed to
os-brick's ``guard_connection`` and to libvirt's volume driver ``get_config`` as
nova-compute does.

No Nova service runs: the module, a ``RequestContext`` carrying the noauth token and a
service catalog (what keystonemiddleware gives nova-api), and the ``[cinder]`` options are
all ``nova.volume.cinder`` needs to build its python-cinderclient. Skipped when nova is not
installed (it comes with the ``test`` extra).

Not checked here: the ``volume-extended`` and ``volume-reimaged`` external events Nova waits
for (the notifier's own tests cover the first).
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Importing nova warns from its dependencies (webob imports ``cgi``, futurist and
# oslo.utils import eventlet, nova's policy defaults are deprecated without a reason):
# none of that is about what these tests pass it.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    nova_cinder = pytest.importorskip(
        "nova.volume.cinder",
        reason="nova is not installed (the test extra installs it: pip install -e '.[test]')",
    )
    from nova import conf as nova_config
    from nova import context as nova_context
    from nova import exception as nova_exc
    from nova.virt import block_device as nova_bdm
    from nova.virt.libvirt import driver as libvirt_driver
    from os_brick import encryptors
    from os_brick.initiator import utils as brick_utils
    from oslo_utils import importutils

from tests.e2e.clients.support import until
from tests.e2e.conftest import System
from tests.helpers.cinder import new_type
from tests.helpers.files import read_at, write_at

CONF = nova_config.CONF
LUKS = {
    "provider": "luks",
    "cipher": "aes-xts-plain64",
    "key_size": 256,
    "control_location": "front-end",
}
GiB = 2**30

# --- Nova, configured as nova-compute is --------------------------------------------------


@dataclass
class Nova:
    api: Any  # nova.volume.cinder.API
    context: Any  # nova.context.RequestContext
    project_id: str
    system: System

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``API.<method>(context, …)`` in a thread (the server runs on this loop)."""
        fn = getattr(self.api, method)
        return await asyncio.to_thread(fn, self.context, *args, **kwargs)

    async def until(self, volume_id: str, done: Callable[[dict[str, Any]], bool]) -> Any:
        """Nova's own polling (``_await_block_device_map_created``): ``API.get``."""
        return await until(lambda: self.api.get(self.context, volume_id), done, timeout=30)

    async def volume_as_compute_reads_it(self, volume_id: str) -> dict[str, Any]:
        """``DriverVolumeBlockDevice._get_volume``: 3.69, else 3.48, else 3.0."""
        get = nova_bdm.DriverVolumeBlockDevice._get_volume
        volume: dict[str, Any] = await asyncio.to_thread(get, self.context, self.api, volume_id)
        return volume


@pytest.fixture(scope="module")
def nova_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``[cinder]`` as a deployment sets it (catalog lookup, no endpoint template), os-brick's
    lock directory, and libvirt's virt type."""
    overrides = [
        ("catalog_info", "volumev3:cinderv3:publicURL", "cinder"),
        ("os_region_name", "RegionOne", "cinder"),
        ("lock_path", str(tmp_path_factory.mktemp("os-brick-locks")), "oslo_concurrency"),
        ("virt_type", "kvm", "libvirt"),
    ]
    for name, value, group in overrides:
        CONF.set_override(name, value, group=group)
    try:
        yield
    finally:
        for name, _value, group in overrides:
            CONF.clear_override(name, group=group)


@pytest.fixture
def nova(system: System, nova_conf: None) -> Nova:
    """A project of its own, and the context nova-compute gets over RPC from nova-api: the
    user's token (noauth ``user:project``) and the service catalog keystonemiddleware gave."""
    project_id = uuid.uuid4().hex
    catalog = [
        {
            "type": "volumev3",
            "name": "cinderv3",
            "endpoints": [
                {
                    "region": "RegionOne",
                    "publicURL": f"{system.url}/v3/{project_id}",
                    "internalURL": f"{system.url}/v3/{project_id}",
                }
            ],
        }
    ]
    context = nova_context.RequestContext(
        user_id="nova-user",
        project_id=project_id,
        auth_token=f"nova-user:{project_id}",
        service_catalog=catalog,
        is_admin=False,
    )
    return Nova(nova_cinder.API(), context, project_id, system)


# --- what nova-compute does with the answers ----------------------------------------------


def connector(host: str = "compute-1", ip: str = "192.0.2.11") -> dict[str, Any]:
    """What ``LibvirtDriver.get_volume_connector`` returns (os-brick's
    ``get_connector_properties`` on a Linux host with iSCSI and NVMe-oF initiators)."""
    return {
        "platform": "x86_64",
        "os_type": "linux",
        "ip": ip,
        "host": host,
        "multipath": False,
        "enforce_multipath": False,
        "initiator": f"iqn.2004-10.com.ubuntu:01:{host}",
        "do_local_attach": False,
        "nvme_hostid": str(uuid.uuid5(uuid.NAMESPACE_DNS, host)),
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, host)),
        "system uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, host)),
        "nqn": f"nqn.2014-08.org.nvmexpress:uuid:{uuid.uuid5(uuid.NAMESPACE_X500, host)}",
        "nvme_native_multipath": True,
        "found_dsc": "",
    }


def guarded(volume: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """``with brick_utils.guard_connection(volume)``, around every attach and detach, on a
    host whose iscsiadm has no manual scan (so any ``shared_targets`` but false locks on
    ``service_uuid``). Also what Nova needs for it: the 3.48 fields, as Cinder gives them for
    a volume on a backend."""
    assert volume.get("shared_targets") in (True, False, None), volume
    assert isinstance(volume.get("service_uuid"), str), volume
    uuid.UUID(volume["service_uuid"])
    monkeypatch.setattr(brick_utils, "ISCSI_SUPPORTS_MANUAL_SCAN", False)
    with brick_utils.guard_connection(volume):
        pass


class _Host:
    """The least of ``nova.virt.libvirt.host.Host`` that a volume driver's ``get_config``
    uses: no libvirt secret exists for an unencrypted volume."""

    def find_secret(self, usage_type: str, usage_id: str) -> None:
        return None


def libvirt_disk(connection_info: dict[str, Any], dev: str = "vdb") -> ET.Element:
    """``LibvirtDriver._get_volume_driver`` + ``connect_volume`` + ``get_config`` for the
    answer's ``driver_volume_type``: the guest's ``<disk>`` element."""
    kind = connection_info["driver_volume_type"]
    assert kind in libvirt_driver.VOLUME_DRIVERS, f"libvirt has no volume driver for {kind!r}"
    vol_driver = importutils.import_class(libvirt_driver.VOLUME_DRIVERS[kind])(_Host())
    vol_driver.connect_volume(connection_info, None)
    conf = vol_driver.get_config(connection_info, {"bus": "virtio", "dev": dev, "type": "disk"})
    return ET.fromstring(conf.to_xml())


def check_local_disk(connection_info: dict[str, Any], volume_id: str) -> Path:
    """What libvirt would open for a ``local`` connection: the volume's file, as a block
    source, with the volume id as the disk's serial."""
    assert connection_info["driver_volume_type"] == "local", connection_info
    disk = libvirt_disk(connection_info)
    source = disk.find("source")
    assert source is not None
    device = Path(source.attrib["dev"])
    assert device == Path(connection_info["data"]["device_path"])
    assert device.exists(), device
    assert disk.findtext("serial") == volume_id
    assert disk.find("target").attrib == {"dev": "vdb", "bus": "virtio"}  # type: ignore[union-attr]
    return device


async def boot_volume(nova: Nova, size: int = 1, **kwargs: Any) -> dict[str, Any]:
    """``_create_volume``'s create and wait for ``available``."""
    created = await nova.call("create", size, "nova-bfv", "", **kwargs)
    return await nova.until(created["id"], lambda v: v["status"] == "available")  # type: ignore[no-any-return]


async def attach_new_style(
    nova: Nova,
    volume_id: str,
    server: str,
    monkeypatch: pytest.MonkeyPatch,
    mountpoint: str = "/dev/vdb",
    host: str = "compute-1",
) -> tuple[str, dict[str, Any]]:
    """nova-api's ``attachment_create`` (no connector), then nova-compute's
    ``DriverVolumeBlockDevice.attach``: guard, ``attachment_update`` with the connector,
    the encryption check, libvirt's config, ``attachment_complete``."""
    reserved = await nova.call("attachment_create", volume_id, server)
    assert reserved["connection_info"] == {}, reserved
    volume = await nova.volume_as_compute_reads_it(volume_id)
    assert volume["status"] == "reserved", volume
    guarded(volume, monkeypatch)
    updated = await nova.call("attachment_update", reserved["id"], connector(host), mountpoint)
    connection_info = updated["connection_info"]
    connection_info.setdefault("serial", volume_id)
    assert connection_info["data"]["encrypted"] is False
    encryption = await asyncio.to_thread(
        encryptors.get_encryption_metadata, nova.context, nova.api, volume_id, connection_info
    )
    assert encryption == {}
    check_local_disk(connection_info, volume_id)
    await nova.call("attachment_complete", reserved["id"])
    return reserved["id"], connection_info


# --- the flows ----------------------------------------------------------------------------


async def test_boot_from_volume_creates_and_reserves(nova: Nova) -> None:
    """nova-compute's ``_create_volume`` for a ``source_type=blank`` root disk, and for one
    from a snapshot: create, wait, ``attachment_create`` without a connector."""
    server = str(uuid.uuid4())
    volume = await boot_volume(nova, 2)
    assert (volume["size"], volume["attach_status"], volume["bootable"]) == (2, "detached", False)
    assert volume["availability_zone"] == "nova"
    reserved = await nova.call("attachment_create", volume["id"], server)
    assert reserved["volume_id"] == volume["id"]
    assert reserved["instance"] == server
    assert reserved["status"] == "reserved"
    assert reserved["connection_info"] == {}
    again = await nova.call("attachment_get", reserved["id"])
    assert (again["id"], again["status"], again["connection_info"]) == (
        reserved["id"],
        "reserved",
        {},
    )
    listed = await asyncio.to_thread(nova.api.attachment_get_all, nova.context, instance_id=server)
    assert [a["id"] for a in listed] == [reserved["id"]]
    seen = await nova.call("get", volume["id"])
    assert seen["status"] == "reserved"

    # source_type=snapshot: a volume from the snapshot of another volume-backed server.
    other = await boot_volume(nova)
    snap = await nova.call("create_snapshot", other["id"], "nova-snap", "")
    await until(
        lambda: nova.api.get_snapshot(nova.context, snap["id"]),
        lambda s: s["status"] == "available",
    )
    from_snap = await boot_volume(nova, 2, snapshot={"id": snap["id"]})
    assert (from_snap["snapshot_id"], from_snap["size"]) == (snap["id"], 2)

    # Cleaning up a failed boot: the attachment goes, the volume is available again.
    await nova.call("attachment_delete", reserved["id"])
    await nova.until(volume["id"], lambda v: v["status"] == "available")


async def test_attach_and_detach_with_the_attachments_api(
    nova: Nova, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume = await boot_volume(nova)
    server = str(uuid.uuid4())
    attachment_id, connection_info = await attach_new_style(nova, volume["id"], server, monkeypatch)
    assert connection_info["data"]["access_mode"] == "rw"

    seen = await nova.call("get", volume["id"])
    assert (seen["status"], seen["attach_status"]) == ("in-use", "attached")
    assert seen["attachments"] == {
        server: {"attachment_id": attachment_id, "mountpoint": "/dev/vdb"}
    }
    # Nova's translation moves the attachment's status into the connection_info it rebuilds.
    stored = await nova.call("attachment_get", attachment_id)
    assert stored["connection_info"]["status"] == "attached"
    assert stored["connection_info"]["instance"] == server
    assert stored["connection_info"]["driver_volume_type"] == "local"
    assert (
        stored["connection_info"]["data"]["device_path"] == connection_info["data"]["device_path"]
    )

    # Detach: nova-api begins detaching, nova-compute guards, disconnects, deletes.
    await nova.call("begin_detaching", volume["id"])
    detaching = await nova.volume_as_compute_reads_it(volume["id"])
    assert detaching["status"] == "detaching"
    guarded(detaching, monkeypatch)
    await nova.call("attachment_delete", attachment_id)
    gone = await nova.until(volume["id"], lambda v: v["status"] == "available")
    assert gone["attach_status"] == "detached"
    assert "attachments" not in gone
    with pytest.raises(nova_exc.VolumeAttachmentNotFound):
        await nova.call("attachment_get", attachment_id)


async def test_legacy_attach_and_detach(nova: Nova, monkeypatch: pytest.MonkeyPatch) -> None:
    """A BDM without an attachment id: reserve, initialize_connection, attach; then
    begin_detaching, terminate_connection, detach (``_legacy_volume_attach``, ``_do_detach``)."""
    volume = await boot_volume(nova)
    server = str(uuid.uuid4())
    conn = connector()
    await nova.call("reserve_volume", volume["id"])
    reserved = await nova.volume_as_compute_reads_it(volume["id"])
    assert reserved["status"] == "attaching"
    guarded(reserved, monkeypatch)
    connection_info = await nova.call("initialize_connection", volume["id"], conn)
    assert connection_info["connector"] == conn
    connection_info.setdefault("serial", volume["id"])
    check_local_disk(connection_info, volume["id"])
    mode = connection_info["data"].get("access_mode", "rw")
    assert mode == "rw"
    await nova.call("attach", volume["id"], server, "/dev/vdb", mode=mode)
    seen = await nova.call("get", volume["id"])
    assert (seen["status"], seen["attach_status"]) == ("in-use", "attached")
    assert seen["attachments"][server]["mountpoint"] == "/dev/vdb"

    await nova.call("begin_detaching", volume["id"])
    detaching = await nova.volume_as_compute_reads_it(volume["id"])
    guarded(detaching, monkeypatch)
    await nova.call("terminate_connection", volume["id"], conn)
    await asyncio.to_thread(nova.api.detach, nova.context.elevated(), volume["id"], server)
    gone = await nova.until(volume["id"], lambda v: v["status"] == "available")
    assert gone["attach_status"] == "detached"


async def test_live_migration_moves_the_attachment(
    nova: Nova, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pre_live_migration`` on the destination: ``attachment_create`` with its connector
    and the mountpoint, libvirt's config there, ``attachment_complete``; then
    ``post_live_migration`` on the source deletes the source's attachment."""
    volume = await boot_volume(nova)
    server = str(uuid.uuid4())
    source_id, _ = await attach_new_style(nova, volume["id"], server, monkeypatch)

    dest = await nova.call(
        "attachment_create",
        volume["id"],
        server,
        connector=connector("compute-2", "192.0.2.12"),
        mountpoint="/dev/vdb",
    )
    assert dest["id"] != source_id
    dest_info = dest["connection_info"]
    dest_info.setdefault("serial", volume["id"])
    check_local_disk(dest_info, volume["id"])
    await nova.call("attachment_complete", dest["id"])

    volume_now = await nova.volume_as_compute_reads_it(volume["id"])
    guarded(volume_now, monkeypatch)
    await nova.call("attachment_delete", source_id)
    after = await nova.call("get", volume["id"])
    assert (after["status"], after["attach_status"]) == ("in-use", "attached")
    assert after["attachments"] == {server: {"attachment_id": dest["id"], "mountpoint": "/dev/vdb"}}
    listed = await asyncio.to_thread(
        nova.api.attachment_get_all, nova.context, volume_id=volume["id"]
    )
    assert [a["id"] for a in listed] == [dest["id"]]
    # The list is Cinder's summary view (no connection_info): status stays on top.
    assert listed[0]["status"] == "attached"


async def test_swap_volume_completion(nova: Nova, monkeypatch: pytest.MonkeyPatch) -> None:
    """``PUT /servers/{id}/os-volume_attachments/{old}`` for a legacy-attached volume:
    nova-api begins detaching the old one and reserves the new one; nova-compute connects the
    new one, terminates the old connection and calls ``migrate_volume_completion``."""
    old = await boot_volume(nova)
    new = await boot_volume(nova)
    server = str(uuid.uuid4())
    conn = connector()
    await nova.call("reserve_volume", old["id"])
    guarded(await nova.volume_as_compute_reads_it(old["id"]), monkeypatch)
    await nova.call("initialize_connection", old["id"], conn)
    await nova.call("attach", old["id"], server, "/dev/vdb", mode="rw")

    # nova-api
    before = await nova.call("get", old["id"])
    assert server in before["attachments"]
    await nova.call("begin_detaching", old["id"])
    await nova.call("reserve_volume", new["id"])
    # nova-compute
    new_info = await nova.call("initialize_connection", new["id"], conn)
    new_info.setdefault("serial", new["id"])
    check_local_disk(new_info, new["id"])
    await nova.call("terminate_connection", old["id"], conn)
    saved = await nova.call("migrate_volume_completion", old["id"], new["id"], error=False)
    assert saved == {"save_volume_id": new["id"]}

    old_after = await nova.until(old["id"], lambda v: v["status"] not in ("detaching", "in-use"))
    assert (old_after["status"], old_after["attach_status"]) == ("available", "detached")
    new_after = await nova.until(new["id"], lambda v: v["status"] != "attaching")
    assert (new_after["status"], new_after["attach_status"]) == ("in-use", "attached")
    assert new_after["attachments"][server]["mountpoint"] == "/dev/vdb"


async def test_swap_volume_with_new_style_attachments(
    nova: Nova, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same swap for a BDM with an attachment id: no completion call; a new attachment
    on the new volume, updated and completed, and the old one deleted (``_swap_volume``)."""
    old = await boot_volume(nova)
    new = await boot_volume(nova)
    server = str(uuid.uuid4())
    # The old volume attached as attach_new_style does (no guard: swap has none).
    reserved = await nova.call("attachment_create", old["id"], server)
    await nova.call("attachment_update", reserved["id"], connector(), "/dev/vdb")
    await nova.call("attachment_complete", reserved["id"])

    await nova.call("begin_detaching", old["id"])
    new_attachment = await nova.call("attachment_create", new["id"], server)
    new_info = (
        await nova.call("attachment_update", new_attachment["id"], connector(), "/dev/vdb")
    )["connection_info"]
    new_info.setdefault("serial", new["id"])
    check_local_disk(new_info, new["id"])
    await nova.call("attachment_complete", new_attachment["id"])
    await nova.call("attachment_delete", reserved["id"])

    old_after = await nova.until(old["id"], lambda v: v["status"] == "available")
    assert old_after["attach_status"] == "detached"
    new_after = await nova.call("get", new["id"])
    assert new_after["status"] == "in-use"
    assert new_after["attachments"] == {
        server: {"attachment_id": new_attachment["id"], "mountpoint": "/dev/vdb"}
    }


async def test_rebuild_reimages_the_root_volume(
    nova: Nova, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_rebuild_volume_backed_instance``: a new empty attachment keeps the volume
    reserved while the old one goes, then ``reimage_volume(reimage_reserved=True)``; the
    image's bytes are on the volume and the spawn attaches it again."""
    system = nova.system
    # An image to rebuild from: a volume uploaded to the image store.
    source = await boot_volume(nova)
    source_path = system.driver.volume_path(source["id"], await host_of(system, source["id"]))
    await asyncio.to_thread(write_at, source_path, 0, b"rebuilt root disk")
    client = system.client.as_(project_id=nova.project_id, version="3.1")
    upload = await client.action(
        source["id"],
        {"os-volume_upload_image": {"image_name": "nova-rebuild", "disk_format": "raw"}},
    )
    assert upload.status == 202, upload.text
    image_id = upload.json["os-volume_upload_image"]["image_id"]
    await nova.until(source["id"], lambda v: v["status"] == "available")

    root = await boot_volume(nova)
    server = str(uuid.uuid4())
    old_attachment, _ = await attach_new_style(nova, root["id"], server, monkeypatch, "/dev/vda")
    root_path = system.driver.volume_path(root["id"], await host_of(system, root["id"]))
    await asyncio.to_thread(write_at, root_path, 0, b"the old root disk")

    new_attachment = await nova.call("attachment_create", root["id"], server)
    guarded(await nova.volume_as_compute_reads_it(root["id"]), monkeypatch)
    await nova.call("attachment_delete", old_attachment)
    assert (await nova.call("get", root["id"]))["status"] == "reserved"
    # A reserved volume is re-imaged only when the caller says so (Cinder's 400).
    with pytest.raises(nova_exc.InvalidInput):
        await nova.call("reimage_volume", root["id"], image_id)
    await nova.call("reimage_volume", root["id"], image_id, reimage_reserved=True)
    await until(lambda: read_at(root_path, 0, 17), lambda head: head == b"rebuilt root disk")
    await nova.until(root["id"], lambda v: v["status"] == "reserved")

    # spawn: attach the rebuilt root disk again.
    info = (await nova.call("attachment_update", new_attachment["id"], connector(), "/dev/vda"))[
        "connection_info"
    ]
    info.setdefault("serial", root["id"])
    check_local_disk(info, root["id"])
    await nova.call("attachment_complete", new_attachment["id"])
    assert (await nova.call("get", root["id"]))["status"] == "in-use"


async def test_boot_from_volume_of_an_image(nova: Nova, monkeypatch: pytest.MonkeyPatch) -> None:
    """nova-compute's ``_create_volume`` for a ``source_type=image`` root disk
    (``DriverImageBlockDevice``): create with ``image_id``, wait for ``available``, attach;
    the image's bytes are on the volume, which is bootable with the image's metadata."""
    system = nova.system
    source = await boot_volume(nova, 2)  # a 2 GiB image
    source_path = system.driver.volume_path(source["id"], await host_of(system, source["id"]))
    await asyncio.to_thread(write_at, source_path, 0, b"image root disk")
    client = system.client.as_(project_id=nova.project_id, version="3.1")
    upload = await client.action(
        source["id"],
        {"os-volume_upload_image": {"image_name": "nova-boot", "disk_format": "raw"}},
    )
    assert upload.status == 202, upload.text
    image_id = upload.json["os-volume_upload_image"]["image_id"]
    await nova.until(source["id"], lambda v: v["status"] == "available")

    root = await boot_volume(nova, 2, image_id=image_id)

    assert (root["size"], root["bootable"]) == (2, True)
    assert root["volume_image_metadata"]["image_id"] == image_id
    assert root["volume_image_metadata"]["image_name"] == "nova-boot"
    root_path = system.driver.volume_path(root["id"], await host_of(system, root["id"]))
    assert await asyncio.to_thread(read_at, root_path, 0, 15) == b"image root disk"
    server = str(uuid.uuid4())
    await attach_new_style(nova, root["id"], server, monkeypatch, "/dev/vda")
    assert (await nova.call("get", root["id"]))["status"] == "in-use"
    # An image bigger than the requested size: Cinder's 400, which Nova raises as InvalidInput.
    with pytest.raises(nova_exc.InvalidInput, match="larger than volume size 1GB"):
        await nova.call("create", 1, "too-small", "", image_id=image_id)
    # ... and so is an unknown image.
    with pytest.raises(nova_exc.InvalidInput):
        await nova.call("create", 1, "unknown", "", image_id=str(uuid.uuid4()))


async def test_snapshot_of_a_volume_backed_server(nova: Nova) -> None:
    """``API.snapshot_volume_backed``: the snapshot quota from ``get_absolute_limits``, then a
    forced snapshot of the in-use root volume, polled until available (``unquiesce``)."""
    volume = await boot_volume(nova)
    server = str(uuid.uuid4())
    reserved = await nova.call("attachment_create", volume["id"], server)
    await nova.call("attachment_update", reserved["id"], connector(), "/dev/vda")
    await nova.call("attachment_complete", reserved["id"])

    limits = await nova.call("get_absolute_limits")
    assert limits["totalSnapshotsUsed"] == 0, limits
    assert isinstance(limits["maxTotalSnapshots"], int), limits
    assert limits["maxTotalSnapshots"] == -1 or limits["maxTotalSnapshots"] >= 1

    snap = await nova.call("create_snapshot_force", volume["id"], "snapshot for nova-img", "")
    assert (snap["volume_id"], snap["volume_size"]) == (volume["id"], 1)
    done = await until(
        lambda: nova.api.get_snapshot(nova.context, snap["id"]),
        lambda s: s["status"] != "creating",
    )
    assert done["status"] == "available"
    assert (await nova.call("get_absolute_limits"))["totalSnapshotsUsed"] == 1
    # Without force an in-use volume is refused, as in Cinder.
    with pytest.raises(nova_exc.InvalidInput):
        await nova.call("create_snapshot", volume["id"], "unforced", "")


async def test_encryption_metadata_of_an_unencrypted_volume(nova: Nova) -> None:
    """What Nova asks before it attaches (``get_volume_encryption_metadata``)."""
    volume = await boot_volume(nova)
    metadata = await nova.call("get_volume_encryption_metadata", volume["id"])
    assert metadata == {"encryption_key_id": None}


async def test_attach_an_encrypted_volume(nova: Nova, monkeypatch: pytest.MonkeyPatch) -> None:
    """``_volume_attach`` of a volume whose type is encrypted: the connection says
    ``encrypted``, so os-brick's ``get_encryption_metadata`` asks for the key and the
    type's encryption, which Nova hands to the encryptor (or to libvirt's LUKS support)."""
    admin = nova.system.client
    vtype = await new_type(nova.system)
    reply = await admin.request(
        "POST", f"/types/{vtype['id']}/encryption", body={"encryption": LUKS}
    )
    assert reply.status == 200, reply.text
    volume = await boot_volume(nova, volume_type=vtype["id"])
    shown = await admin.as_(project_id=nova.project_id, version="3.64").show(volume["id"])
    key_id = shown.json["volume"]["encryption_key_id"]
    uuid.UUID(key_id)

    server = str(uuid.uuid4())
    reserved = await nova.call("attachment_create", volume["id"], server)
    guarded(await nova.volume_as_compute_reads_it(volume["id"]), monkeypatch)
    updated = await nova.call("attachment_update", reserved["id"], connector(), "/dev/vdb")
    connection_info = updated["connection_info"]
    assert connection_info["data"]["encrypted"] is True
    metadata = await asyncio.to_thread(
        encryptors.get_encryption_metadata, nova.context, nova.api, volume["id"], connection_info
    )
    assert metadata == {"encryption_key_id": key_id, **LUKS}
    connection_info.setdefault("serial", volume["id"])
    check_local_disk(connection_info, volume["id"])
    await nova.call("attachment_complete", reserved["id"])
    assert (await nova.call("get", volume["id"]))["status"] == "in-use"


async def test_a_catalog_endpoint_without_the_project(
    nova: Nova, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Newer deployments register ``{url}/v3`` in the catalog: Nova finds the version
    document above it and the project comes from the token."""
    for entry in nova.context.service_catalog[0]["endpoints"]:
        entry["publicURL"] = entry["internalURL"] = f"{nova.system.url}/v3"
    volume = await boot_volume(nova)
    server = str(uuid.uuid4())
    attachment_id, _ = await attach_new_style(nova, volume["id"], server, monkeypatch)
    seen = await nova.volume_as_compute_reads_it(volume["id"])
    assert (seen["status"], seen["attachments"][server]["attachment_id"]) == (
        "in-use",
        attachment_id,
    )
    shown = await nova.system.client.show(volume["id"])
    assert shown.json["volume"]["os-vol-tenant-attr:tenant_id"] == nova.project_id


async def test_multiattach_volume_on_two_servers(
    nova: Nova, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multiattach volume on two servers on two hosts: Nova marks each connection
    ``multiattach`` (libvirt makes the disk shareable); detaching one server (begin
    detaching, delete its attachment) leaves the volume in use by the other."""
    vtype = await new_type(nova.system, extra_specs={"multiattach": "<is> True"})
    volume = await boot_volume(nova, volume_type=vtype["id"])
    assert volume["multiattach"] is True
    servers = {str(uuid.uuid4()): "compute-1", str(uuid.uuid4()): "compute-2"}
    attachments: dict[str, str] = {}
    for server, host in servers.items():
        reserved = await nova.call("attachment_create", volume["id"], server)
        guarded(await nova.volume_as_compute_reads_it(volume["id"]), monkeypatch)
        updated = await nova.call("attachment_update", reserved["id"], connector(host), "/dev/vdb")
        info = updated["connection_info"]
        info.setdefault("serial", volume["id"])
        info["multiattach"] = True  # _volume_attach, because volume["multiattach"]
        assert libvirt_disk(info).find("shareable") is not None
        check_local_disk(info, volume["id"])
        await nova.call("attachment_complete", reserved["id"])
        attachments[server] = reserved["id"]
    both = await nova.call("get", volume["id"])
    assert both["attachments"] == {
        server: {"attachment_id": aid, "mountpoint": "/dev/vdb"}
        for server, aid in attachments.items()
    }

    first, second = attachments
    await nova.call("begin_detaching", volume["id"])
    guarded(await nova.volume_as_compute_reads_it(volume["id"]), monkeypatch)
    await nova.call("attachment_delete", attachments[first])
    after = await nova.until(volume["id"], lambda v: v["status"] != "detaching")
    assert (after["status"], list(after["attachments"])) == ("in-use", [second])


async def test_extend_seen_from_nova(nova: Nova) -> None:
    """A user extends an attached volume (3.42); Nova's ``extend_volume`` (after the
    ``volume-extended`` event) reads the new size with ``API.get`` and resizes the guest's
    disk to ``size`` GiB: the device it opened has grown to that."""
    volume = await boot_volume(nova)
    server = str(uuid.uuid4())
    reserved = await nova.call("attachment_create", volume["id"], server)
    updated = await nova.call("attachment_update", reserved["id"], connector(), "/dev/vdb")
    await nova.call("attachment_complete", reserved["id"])
    device = device_path_of(updated["connection_info"])

    user = nova.system.client.as_(project_id=nova.project_id, version="3.42")
    reply = await user.action(volume["id"], {"os-extend": {"new_size": 3}})
    assert reply.status == 202, reply.text
    seen = await nova.until(volume["id"], lambda v: v["status"] != "extending")
    assert (seen["status"], seen["size"]) == ("in-use", 3)
    assert device.stat().st_size == seen["size"] * GiB


# --- small helpers ------------------------------------------------------------------------


async def host_of(system: System, volume_id: str) -> str:
    volume = await system.client.volume(volume_id)
    assert volume is not None
    host: str = volume["os-vol-host-attr:host"]
    return host


def device_path_of(connection_info: dict[str, Any]) -> Path:
    """The device path, whether the answer is Cinder's flat attachment connection_info
    (which Nova nests under ``data``) or the nested one of issue 9 item 2."""
    data = connection_info["data"]
    return Path(data["device_path"] if "device_path" in data else data["data"]["device_path"])
