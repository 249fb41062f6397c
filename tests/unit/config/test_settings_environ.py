"""Settings survive the trip through CINDERBLOCK_* variables (how `cinderblock dev
--processes` hands them to its service processes)."""

from __future__ import annotations

from pathlib import Path

from cinderblock.config.settings import Settings, load_settings, settings_environ


def test_defaults_round_trip() -> None:
    settings = Settings()
    assert load_settings(settings_environ(settings)) == settings


def test_every_kind_of_value_round_trips() -> None:
    settings = load_settings(
        {},
        database_url="postgresql://u@h:1/db",
        port=0,
        data_dir=Path("/tmp/somewhere"),
        pools=("a@b#c:10", "d@e#f:20:multiattach"),
        inject="extend=fail:2",
        enable_force_upload=True,
        read_wait=0.25,
        policy_file=Path("/etc/policy.yaml"),
    )
    env = settings_environ(settings)
    assert env["CINDERBLOCK_POOLS"] == "a@b#c:10,d@e#f:20:multiattach"
    assert env["CINDERBLOCK_ENABLE_FORCE_UPLOAD"] == "true"
    assert load_settings(env) == settings


def test_every_field_is_named() -> None:
    env = settings_environ(Settings())
    assert set(env) == {f"CINDERBLOCK_{name.upper()}" for name in Settings.model_fields}
