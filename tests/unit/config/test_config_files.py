"""Config files as OpenStack operators write cinder.conf (issue 13): Cinder's option names
map onto Settings, later files win, the environment wins over files, unknown options are
ignored as oslo.config ignores them, and a bad value is an error naming option and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from cinderblock.config.files import ignored_options
from cinderblock.config.settings import (
    DEFAULT_POOLS,
    Settings,
    SettingsError,
    load_settings,
    masked,
    resolve_settings,
)

pytestmark = pytest.mark.unit

CINDER_CONF = """\
[DEFAULT]
debug = true
osapi_volume_listen = 0.0.0.0
osapi_volume_listen_port = 9776
auth_strategy = keystone
state_path = /var/lib/cinderblock
host = node1
enabled_backends = file-1, fast
default_availability_zone = az1
quota_volumes = 20
per_volume_size_limit = 100
default_volume_type = lvm
my_ip = 10.0.0.5

[database]
connection = postgresql+psycopg2://cinder:s3cret@db:5432/cinder

[keystone_authtoken]
www_authenticate_uri = http://keystone.example:5000
auth_url = http://keystone:5000
username = cinder
password = hunter2
project_name = service
service_token_roles = service,admin
auth_type = password

[file-1]
volume_driver = cinderblock.drivers.file.FileDriver
file_pools = a, b

[fast]
volume_backend_name = ssd
file_multiattach = true

[backend_defaults]
file_capacity_gb = 50

[nats]
url = nats://nats:s3cret@n1:4222,nats://nats:s3cret@n2:4222
replicas = 3

[somebody_elses]
anything = at all
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cinder_option_names_map_onto_settings(tmp_path: Path) -> None:
    conf = write(tmp_path, "cinder.conf", CINDER_CONF)
    settings = load_settings({}, config_files=[conf])
    assert settings.log_level == "DEBUG"
    assert (settings.host, settings.port) == ("0.0.0.0", 9776)
    assert settings.auth_strategy == "keystone"
    assert settings.data_dir == Path("/var/lib/cinderblock")
    assert settings.default_availability_zone == "az1"
    assert (settings.quota_volumes, settings.per_volume_gigabytes) == (20, 100)
    # asyncpg takes no SQLAlchemy driver name
    assert settings.database_url == "postgresql://cinder:s3cret@db:5432/cinder"
    assert settings.keystone_auth_url == "http://keystone:5000"
    assert settings.keystone_www_authenticate_uri == "http://keystone.example:5000"
    assert (settings.keystone_username, settings.keystone_password) == ("cinder", "hunter2")
    assert settings.keystone_service_token_roles == ("service", "admin")
    assert settings.stream_replicas == 3
    assert settings.pools == (
        "node1@file-1#a:50",
        "node1@file-1#b:50",
        "node1@ssd#pool0:50:multiattach",
    )


def test_later_files_override_earlier_ones_and_the_environment_overrides_both(
    tmp_path: Path,
) -> None:
    first = write(tmp_path, "a.conf", "[DEFAULT]\nquota_volumes = 20\nquota_snapshots = 7\n")
    second = write(tmp_path, "b.conf", "[DEFAULT]\nquota_volumes = 30\n[nats]\nstream = S\n")
    env = {"CINDERBLOCK_STREAM": "FROM_ENV"}
    resolved = resolve_settings(env, config_files=[first, second], port=1234)
    settings = resolved.settings
    assert (settings.quota_volumes, settings.quota_snapshots) == (30, 7)
    assert settings.stream == "FROM_ENV"
    assert resolved.origins["quota_volumes"] == f"file {second} [DEFAULT] quota_volumes"
    assert resolved.origins["quota_snapshots"] == f"file {first} [DEFAULT] quota_snapshots"
    assert resolved.origins["stream"] == "environment CINDERBLOCK_STREAM"
    assert resolved.origins["port"] == "command line"
    assert resolved.origins["nats_url"] == "default"


def test_without_backends_the_default_pools_stay(tmp_path: Path) -> None:
    conf = write(tmp_path, "c.conf", "[DEFAULT]\ndebug = false\n")
    settings = load_settings({}, config_files=[conf])
    assert settings.pools == DEFAULT_POOLS
    assert settings.log_level == "INFO"


def test_unknown_sections_and_options_are_ignored_and_listed(tmp_path: Path) -> None:
    conf = write(tmp_path, "cinder.conf", CINDER_CONF)
    assert load_settings({}, config_files=[conf]) != Settings()
    assert ignored_options([conf]) == [
        f"{conf} [DEFAULT] default_volume_type",
        f"{conf} [DEFAULT] my_ip",
        f"{conf} [keystone_authtoken] auth_type",
        f"{conf} [somebody_elses] anything",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[DEFAULT]\nosapi_volume_listen_port = eighty\n",
            "[DEFAULT] osapi_volume_listen_port: not an integer",
        ),
        ("[DEFAULT]\ndebug = perhaps\n", "[DEFAULT] debug: not a boolean"),
        ("[nats]\nreplicas = 9\n", "[nats] replicas): Input should be less than or equal to 5"),
        ("[DEFAULT]\nauth_strategy = ldap\n", "[DEFAULT] auth_strategy: not a valid value"),
        (
            "[DEFAULT]\nenabled_backends = lvm\n[lvm]\n"
            "volume_driver = cinder.volume.drivers.lvm.LVMVolumeDriver\n",
            "[lvm] volume_driver: 'cinder.volume.drivers.lvm.LVMVolumeDriver' is not available",
        ),
        (
            "[DEFAULT]\nenabled_backends = bad name\n",
            "[bad name]: pool backend 'bad name' must match",
        ),
        (
            "[DEFAULT]\nglance_api_servers = http://g1:9292,http://g2:9292\n",
            "[DEFAULT] glance_api_servers: Cinderblock talks to one Glance",
        ),
    ],
)
def test_a_bad_value_names_the_option_and_the_file(
    tmp_path: Path, text: str, expected: str
) -> None:
    good = write(tmp_path, "good.conf", "[DEFAULT]\nquota_snapshots = 3\n")
    bad = write(tmp_path, "bad.conf", text)
    with pytest.raises(SettingsError) as raised:
        load_settings({}, config_files=[bad, good])
    message = str(raised.value)
    assert str(bad) in message
    assert expected in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "config file not found or unreadable"),
        ("[DEFAULT\nx = 1\n", "is not INI"),
    ],
)
def test_a_missing_or_broken_file_is_a_clear_error(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    path = tmp_path / "cinderblock.conf"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SettingsError, match=expected):
        load_settings({}, config_files=[path])


def test_an_environment_value_error_names_its_variable() -> None:
    with pytest.raises(SettingsError, match=r"port \(from environment CINDERBLOCK_PORT\)"):
        load_settings({"CINDERBLOCK_PORT": "99999"})


def test_secrets_are_masked(tmp_path: Path) -> None:
    conf = write(tmp_path, "cinder.conf", CINDER_CONF)
    settings = load_settings(
        {
            "CINDERBLOCK_NOVA_TOKEN": "tok",
            "CINDERBLOCK_NOTIFICATION_TRANSPORT_URL": "rabbit://u:pw1@r1:5672,u:pw2@r2:5672/",
        },
        config_files=[conf],
    )
    shown = masked(settings)
    assert shown["database_url"] == "postgresql://cinder:***@db:5432/cinder"
    assert shown["nats_url"] == "nats://nats:***@n1:4222,nats://nats:***@n2:4222"
    assert shown["notification_transport_url"] == "rabbit://u:***@r1:5672,u:***@r2:5672/"
    assert (shown["keystone_password"], shown["nova_token"]) == ("***", "***")
    assert shown["glance_token"] == ""  # nothing set: nothing to hide
    assert "hunter2" not in repr(shown)
    assert "s3cret" not in repr(shown)
