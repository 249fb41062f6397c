"""Unmodified python-cinderclient (``encryption-type-*``) and openstacksdk
(``*_type_encryption``) drive the volume-type encryption API, and see an encrypted volume."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from cinderclient import exceptions as cinder_exc

from tests.e2e.clients.support import SDK_WARNINGS, Cinder, Sdk, cinder_at, until
from tests.e2e.conftest import System

pytestmark = SDK_WARNINGS

SPECS = {
    "provider": "luks",
    "cipher": "aes-xts-plain64",
    "key_size": 256,
    "control_location": "front-end",
}


async def test_cinderclient_encryption_types(system: System, cinder: Cinder) -> None:
    c = cinder.client
    vtype = await asyncio.to_thread(c.volume_types.create, f"enc-{uuid.uuid4().hex[:8]}")
    created = await asyncio.to_thread(c.volume_encryption_types.create, vtype, SPECS)
    assert created.provider == "luks"
    shown = await asyncio.to_thread(c.volume_encryption_types.get, vtype)
    assert (shown.cipher, shown.key_size, shown.volume_type_id) == (
        "aes-xts-plain64",
        256,
        vtype.id,
    )
    listed = await asyncio.to_thread(c.volume_encryption_types.list)
    assert vtype.id in [e.volume_type_id for e in listed]
    await asyncio.to_thread(
        c.volume_encryption_types.update, vtype, {"control_location": "back-end"}
    )
    shown = await asyncio.to_thread(c.volume_encryption_types.get, vtype)
    assert shown.control_location == "back-end"
    with pytest.raises(cinder_exc.BadRequest):  # exists already
        await asyncio.to_thread(c.volume_encryption_types.create, vtype, SPECS)

    volume = await asyncio.to_thread(c.volumes.create, 1, volume_type=vtype.id)
    done = await until(lambda: c.volumes.get(volume.id), lambda v: v.status == "available")
    assert done.encrypted is True
    newer = cinder_at(cinder, "3.64")
    key_id = (await asyncio.to_thread(newer.volumes.get, volume.id)).encryption_key_id
    uuid.UUID(key_id)
    with pytest.raises(cinder_exc.BadRequest):  # in use
        await asyncio.to_thread(c.volume_encryption_types.delete, vtype)
    await asyncio.to_thread(c.volumes.delete, volume.id)
    await until(lambda: c.volumes.findall(id=volume.id), lambda found: not found)
    await asyncio.to_thread(c.volume_encryption_types.delete, vtype)
    assert (await asyncio.to_thread(c.volume_encryption_types.get, vtype)).to_dict() == {}


async def test_sdk_type_encryption(system: System, sdk: Sdk) -> None:
    bs = sdk.bs
    vtype = await asyncio.to_thread(bs.create_type, name=f"enc-{uuid.uuid4().hex[:8]}")
    created = await asyncio.to_thread(bs.create_type_encryption, vtype, **SPECS)
    assert created.encryption_id
    fetched = await asyncio.to_thread(bs.get_type_encryption, vtype)
    assert (fetched.provider, fetched.key_size, fetched.encryption_id) == (
        "luks",
        256,
        created.encryption_id,
    )
    await asyncio.to_thread(bs.update_type_encryption, volume_type=vtype, key_size=512)
    assert (await asyncio.to_thread(bs.get_type_encryption, vtype)).key_size == 512
    await asyncio.to_thread(bs.delete_type_encryption, volume_type=vtype)
    reply = await system.client.request("GET", f"/types/{vtype.id}/encryption")
    assert reply.json == {}
