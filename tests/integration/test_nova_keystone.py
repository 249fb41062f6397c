"""The Nova notifier's credentials from Keystone: with CINDERBLOCK_NOVA_TOKEN unset and the
keystone_* service user configured, Nova gets the service user's token; a 401 from Nova
(token expired or revoked) renews it once; Keystone down is a failed attempt, retried."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import cast

import aiohttp
import pytest_asyncio

from cinderblock.config.settings import Settings
from cinderblock.identity.keystone import service_tokens
from tests.helpers.rigs import NovaKeystoneRig, open_nova_keystone_rig


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[NovaKeystoneRig]:
    async with open_nova_keystone_rig() as r:
        yield r


async def test_nova_gets_the_service_users_keystone_token(rig: NovaKeystoneRig) -> None:
    vid, server = str(uuid.uuid4()), str(uuid.uuid4())
    delivery = await rig.client.volume_extended(vid, [server])
    assert delivery.answered
    assert [e["result"] for e in delivery.events] == ["accepted"]
    sent = rig.nova.requests_for(vid)[0].headers["X-Auth-Token"]
    assert rig.keystone.tokens[sent].user_id == "nova-notifier"
    # The token is kept: a second notification logs in no more.
    await rig.client.volume_extended(str(uuid.uuid4()), [server])
    assert rig.keystone.logins == 1


async def test_a_401_from_nova_renews_the_token_once(rig: NovaKeystoneRig) -> None:
    vid, server = str(uuid.uuid4()), str(uuid.uuid4())
    await rig.client.volume_extended(str(uuid.uuid4()), [server])
    rig.keystone.tokens.clear()  # every token revoked: Nova now answers 401 to the old one
    delivery = await rig.client.volume_extended(vid, [server])
    assert delivery.answered
    assert rig.keystone.logins == 2
    first, second = rig.nova.requests_for(vid)
    assert first.headers["X-Auth-Token"] != second.headers["X-Auth-Token"]


async def test_keystone_down_is_a_failed_attempt_not_a_crash(rig: NovaKeystoneRig) -> None:
    rig.keystone.down = True
    delivery = await rig.client.volume_extended(str(uuid.uuid4()), [str(uuid.uuid4())])
    assert not delivery.answered
    assert delivery.attempts == 3
    assert delivery.reason is not None
    assert "Keystone" in delivery.reason


def test_a_static_token_wins_and_no_keystone_means_no_token_source() -> None:
    session = cast(aiohttp.ClientSession, None)  # not used when no token source is made
    both = Settings(nova_token="t", keystone_auth_url="http://k", keystone_username="u")
    assert service_tokens(both, session) is None
    assert service_tokens(Settings(), session) is None
