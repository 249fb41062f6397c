"""noauth makes every caller admin: the API warns at start-up when it listens beyond
loopback with it (docker-compose.yml publishes it on loopback only, tests/contract)."""

from __future__ import annotations

import logging

import pytest

from cinderblock.api.app import _warn_if_noauth_exposed
from cinderblock.config.settings import Settings


@pytest.mark.parametrize(
    ("host", "auth", "warned"),
    [
        ("0.0.0.0", "noauth", True),
        ("", "noauth", True),
        ("api.example.org", "noauth", True),
        ("127.0.0.1", "noauth", False),
        ("::1", "noauth", False),
        ("localhost", "noauth", False),
        ("0.0.0.0", "keystone", False),
    ],
)
def test_noauth_beyond_loopback_is_warned_about_at_start_up(
    caplog: pytest.LogCaptureFixture, host: str, auth: str, warned: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="cinderblock.api.app")
    _warn_if_noauth_exposed(Settings(host=host, auth_strategy=auth))
    lines = [r for r in caplog.records if "every caller" in r.getMessage()]
    assert len(lines) == int(warned)
