"""An unmodified python-cinderclient reads why an extend failed through its messages manager
(``messages.list/get/delete``, 3.3+), and deletes the message for good."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cinderclient import exceptions as cinder_exc

from tests.e2e.clients.support import Cinder, cinder_at, until
from tests.e2e.conftest import System


async def _failed_extend(system: System, c: Any) -> str:
    created = await asyncio.to_thread(c.volumes.create, 1)
    await until(lambda: c.volumes.get(created.id), lambda v: v.status == "available")
    system.faults("extend=fail")
    try:
        await asyncio.to_thread(c.volumes.extend, created.id, 2)
        await until(lambda: c.volumes.get(created.id), lambda v: v.status == "error_extending")
    finally:
        system.faults("")
    volume_id: str = created.id
    return volume_id


async def test_cinderclient_lists_gets_and_deletes_messages(system: System, cinder: Cinder) -> None:
    c = cinder.client
    vid = await _failed_extend(system, c)
    mine = {"resource_uuid": vid}
    (message,) = await until(lambda: c.messages.list(search_opts=mine), lambda found: found)
    assert message.event_id == "VOLUME_VOLUME_007_010"
    assert message.user_message == "extend volume:Volume Driver failed to extend volume."
    assert (message.resource_type, message.resource_uuid) == ("VOLUME", vid)
    assert message.message_level == "ERROR"
    assert message.request_id.startswith("req-")
    shown = await asyncio.to_thread(c.messages.get, message.id)
    assert shown.to_dict() == message.to_dict()

    # 3.3 (list without paging) and the list's sort and limit of 3.5
    old = cinder_at(cinder, "3.3")
    assert message.id in {m.id for m in await asyncio.to_thread(old.messages.list)}
    newest = await asyncio.to_thread(c.messages.list, search_opts=mine, limit=1, sort="id:asc")
    assert [m.id for m in newest] == [message.id]

    await asyncio.to_thread(c.messages.delete, message)
    assert await asyncio.to_thread(c.messages.list, search_opts=mine) == []
    with pytest.raises(cinder_exc.NotFound) as gone:
        await asyncio.to_thread(c.messages.get, message.id)
    assert gone.value.message == f"Message {message.id} could not be found."
    with pytest.raises(cinder_exc.NotFound):
        await asyncio.to_thread(message.delete)
