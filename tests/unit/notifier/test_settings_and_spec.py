"""The notifier's configuration: off without a Nova URL (said once), its durable, back-off."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cinderblock.config.settings import Settings, SettingsError, load_settings
from cinderblock.notifier import run as notifier
from cinderblock.notifier.nova import BACKOFF_CAP, NovaConfig

pytestmark = pytest.mark.unit


async def test_without_a_nova_url_it_says_so_once_and_idles_until_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="cinderblock.notifier.run"):
        task = asyncio.create_task(notifier.run(Settings(), stop=stop))
        await asyncio.sleep(0)  # let it start: no servers are needed when off
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 5)
    said = [r for r in caplog.records if r.name == "cinderblock.notifier.run"]
    assert [r.getMessage() for r in said] == [
        "nova notifier off: CINDERBLOCK_NOVA_URL is unset, Nova is not told about extends"
    ]
    assert said[0].enabled is False  # type: ignore[attr-defined]


def test_nova_settings_come_from_the_environment() -> None:
    s = load_settings(
        {
            "CINDERBLOCK_NOVA_URL": "http://nova:8774/v2.1",
            "CINDERBLOCK_NOVA_TOKEN": "svc:proj",
            "CINDERBLOCK_NOVA_ATTEMPTS": "2",
        }
    )
    config = NovaConfig.of(s)
    assert config.events_url == "http://nova:8774/v2.1/os-server-external-events"
    assert (config.token, config.attempts, config.timeout) == ("svc:proj", 2, 10.0)
    with pytest.raises(SettingsError):
        load_settings({"CINDERBLOCK_NOVA_ATTEMPTS": "0"})


def test_backoff_doubles_and_is_capped() -> None:
    config = NovaConfig("http://nova", backoff=0.5, attempts=10)
    assert [config.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert config.delay(9) == BACKOFF_CAP


def test_its_durable_outlasts_the_longest_step_and_starts_at_new_messages() -> None:
    s = Settings(subject_prefix="p.", saga_ack_wait=1.0, nova_timeout=20.0, read_wait=5.0)
    spec = notifier.consumer_spec(s)
    assert spec.durable == "p-notifier"
    assert spec.filter_subjects == ["p.volume.events.Extended.>", "p.volume.events.Reimaged.>"]
    assert spec.ack_wait > NovaConfig.of(s).longest_call > 20.0
    assert spec.deliver_new
