"""`cinderblock config`, `--config-file` and `--version` as an operator runs them (a real
process each, issue 13): where each setting came from, secrets masked, later files and the
environment winning, and a bad file refused with exit code 2 and a message, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

CONF = """\
[DEFAULT]
osapi_volume_listen_port = 9776
enabled_backends = fast
my_ip = 10.0.0.5

[database]
connection = postgresql://cinder:s3cret@db:5432/cinder

[keystone_authtoken]
password = hunter2

[fast]
file_pools = p1
file_capacity_gb = 20
"""


def cinderblock(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CINDERBLOCK_")}
    return subprocess.run(
        [sys.executable, "-m", "cinderblock.cli.main", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
        check=False,
    )


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "cinderblock.conf"
    path.write_text(CONF)
    return path


def test_config_shows_each_value_and_where_it_came_from(conf: Path, tmp_path: Path) -> None:
    later = tmp_path / "later.conf"
    later.write_text("[DEFAULT]\nosapi_volume_listen_port = 9777\n")
    done = cinderblock(
        "--config-file",
        str(conf),
        "config",
        "--json",
        "--config-file",
        str(later),
        env={"CINDERBLOCK_QUOTA_VOLUMES": "42"},
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    settings = shown["settings"]
    assert settings["port"] == {
        "value": "9777",
        "from": f"file {later} [DEFAULT] osapi_volume_listen_port",
    }
    assert settings["quota_volumes"] == {
        "value": "42",
        "from": "environment CINDERBLOCK_QUOTA_VOLUMES",
    }
    assert settings["pools"]["value"] == "cinderblock@fast#p1:20"
    assert settings["database_url"]["value"] == "postgresql://cinder:***@db:5432/cinder"
    assert settings["keystone_password"]["value"] == "***"
    assert settings["stream"] == {"value": "VOLUME_EVENTS", "from": "default"}
    assert shown["ignored"] == [f"{conf} [DEFAULT] my_ip"]
    assert "hunter2" not in done.stdout
    assert "s3cret" not in done.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[DEFAULT]\nosapi_volume_listen_port = http\n", "osapi_volume_listen_port: not an"),
        ("[nats\nurl = x\n", "is not INI"),
        (None, "config file not found"),
    ],
)
def test_a_bad_config_file_stops_every_command_with_exit_2(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "bad.conf"
    if text is not None:
        path.write_text(text)
    for argv in (["config"], ["serve", "api"]):
        done = cinderblock(*argv, "--config-file", str(path))
        assert done.returncode == 2
        assert str(path) in done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr


def test_version() -> None:
    done = cinderblock("--version")
    assert (done.returncode, done.stdout) == (0, f"cinderblock {version('cinderblock')}\n")


def test_every_subcommand_shows_an_example() -> None:
    for command in ("dev", "serve", "state", "bench-log", "config"):
        done = cinderblock(command, "--help")
        assert done.returncode == 0
        assert f"examples:\n  cinderblock {command}" in done.stdout
        assert "--config-file PATH" in done.stdout
