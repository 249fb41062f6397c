"""Config files in the INI form OpenStack operators know from cinder.conf, read with
oslo.config: Cinder's option names where Cinderblock has the setting (``[DEFAULT]``,
``[database] connection``, ``[keystone_authtoken]`` as keystonemiddleware names them,
``enabled_backends`` with a section per backend), and sections of our own (``[nats]``,
``[sagas]``, ``[api]``, ``[glance]``, ``[nova]``) for the rest.

Each option maps onto one ``Settings`` field (``OPTIONS``); a backend section maps onto
pools. As oslo.config does, later files override earlier ones and unknown sections and
options are ignored; a value of the wrong type is an error naming the option and the file.
oslo.config is imported only when a file is read (``cinderblock --help`` stays fast)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cinderblock.config.settings import Settings, SettingsError

if TYPE_CHECKING:
    from oslo_config import cfg


class ConfigFileError(SettingsError):
    """Raised when a config file is missing, is not INI, or holds a malformed value."""


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class FileOption:
    """One config-file option and the setting it gives a value to.

    ``kind`` is oslo.config's type (str, int, float, bool, list, port); ``convert`` turns
    the typed value into the setting's value."""

    section: str
    name: str
    field: str
    kind: str = "str"
    convert: Callable[[Any], Any] = _same
    choices: tuple[str, ...] = ()
    note: str = ""  # what the reference says about the mapping, beyond the field's help

    def __str__(self) -> str:
        return f"[{self.section}] {self.name}"


def _log_level(debug: bool) -> str:
    return "DEBUG" if debug else "INFO"


def _log_format(use_json: bool) -> str:
    return "json" if use_json else "text"


def _auth_strategy(value: str) -> str:
    # Cinderblock's noauth serves both URL forms (with and without the project id).
    return "noauth" if value == "noauth_include_project_id" else value


def _database_url(value: str) -> str:
    """A SQLAlchemy URL names its driver (postgresql+psycopg2://); asyncpg wants none."""
    scheme, sep, rest = value.partition("://")
    if sep and scheme.startswith("postgresql+"):
        return f"postgresql://{rest}"
    return value


def _one_glance(servers: list[str]) -> str:
    if len(servers) > 1:
        raise ValueError("Cinderblock talks to one Glance: give one URL")
    return servers[0] if servers else ""


def _joined(values: list[str]) -> str:
    return ",".join(values)


OPTIONS: tuple[FileOption, ...] = (
    FileOption("DEFAULT", "debug", "log_level", "bool", _log_level, note="true: DEBUG"),
    FileOption("DEFAULT", "use_json", "log_format", "bool", _log_format, note="false: text"),
    FileOption("DEFAULT", "osapi_volume_listen", "host"),
    FileOption("DEFAULT", "osapi_volume_listen_port", "port", "int"),
    FileOption("DEFAULT", "state_path", "data_dir"),
    FileOption("DEFAULT", "project_id_regex", "project_id_regex"),
    FileOption(
        "DEFAULT",
        "auth_strategy",
        "auth_strategy",
        convert=_auth_strategy,
        choices=("noauth", "noauth_include_project_id", "keystone"),
        note="noauth_include_project_id is noauth",
    ),
    FileOption("DEFAULT", "default_availability_zone", "default_availability_zone"),
    FileOption("DEFAULT", "quota_volumes", "quota_volumes", "int"),
    FileOption("DEFAULT", "quota_gigabytes", "quota_gigabytes", "int"),
    FileOption("DEFAULT", "quota_snapshots", "quota_snapshots", "int"),
    FileOption("DEFAULT", "per_volume_size_limit", "per_volume_gigabytes", "int"),
    FileOption("DEFAULT", "enable_force_upload", "enable_force_upload", "bool"),
    FileOption("DEFAULT", "glance_api_servers", "glance_url", "list", _one_glance, note="one URL"),
    FileOption("DEFAULT", "control_exchange", "notification_exchange"),
    FileOption(
        "database", "connection", "database_url", convert=_database_url, note="+driver dropped"
    ),
    FileOption("keystone_authtoken", "auth_url", "keystone_auth_url"),
    FileOption("keystone_authtoken", "www_authenticate_uri", "keystone_www_authenticate_uri"),
    FileOption("keystone_authtoken", "username", "keystone_username"),
    FileOption("keystone_authtoken", "password", "keystone_password"),
    FileOption("keystone_authtoken", "project_name", "keystone_project_name"),
    FileOption("keystone_authtoken", "user_domain_name", "keystone_user_domain_name"),
    FileOption("keystone_authtoken", "project_domain_name", "keystone_project_domain_name"),
    FileOption("keystone_authtoken", "token_cache_time", "keystone_token_cache_time", "float"),
    FileOption("keystone_authtoken", "http_connect_timeout", "keystone_timeout", "float"),
    FileOption("keystone_authtoken", "service_token_roles", "keystone_service_token_roles", "list"),
    FileOption(
        "keystone_authtoken",
        "service_token_roles_required",
        "keystone_service_token_roles_required",
        "bool",
    ),
    FileOption("oslo_policy", "policy_file", "policy_file"),
    FileOption("oslo_messaging_notifications", "transport_url", "notification_transport_url"),
    FileOption("oslo_messaging_notifications", "topics", "notification_topics", "list", _joined),
    FileOption("nats", "url", "nats_url"),
    FileOption("nats", "stream", "stream"),
    FileOption("nats", "replicas", "stream_replicas", "int"),
    FileOption("nats", "subject_prefix", "subject_prefix"),
    FileOption("api", "read_wait", "read_wait", "float"),
    FileOption("sagas", "max_deliver", "saga_max_deliver", "int"),
    FileOption("sagas", "ack_wait", "saga_ack_wait", "float"),
    FileOption("sagas", "inject_faults", "inject"),
    FileOption("glance", "token", "glance_token"),
    FileOption("nova", "endpoint_override", "nova_url"),
    FileOption("nova", "token", "nova_token"),
    FileOption("nova", "timeout", "nova_timeout", "float"),
    FileOption("nova", "attempts", "nova_attempts", "int"),
    FileOption("nova", "backoff", "nova_backoff", "float"),
)

# The pools come from enabled_backends: a section per backend with these options (Cinder's
# [backend_defaults] gives a value to every backend section that does not set its own).
FILE_DRIVER = "cinderblock.drivers.file.FileDriver"
BACKEND_OPTIONS: tuple[tuple[str, str, Any, str], ...] = (
    (
        "volume_backend_name",
        "str",
        None,
        "the backend's name in pools and volume types (default: the section's name)",
    ),
    ("volume_driver", "str", FILE_DRIVER, f"only {FILE_DRIVER} (the file driver)"),
    ("file_pools", "list", ["pool0"], "the backend's pools"),
    ("file_capacity_gb", "int", 1000, "capacity of each pool in GiB"),
    ("file_multiattach", "bool", False, "whether its pools take multiattach volumes"),
)
POOL_OPTIONS = (
    FileOption("DEFAULT", "enabled_backends", "pools", "list", note="a section per backend"),
    FileOption("DEFAULT", "host", "pools", note="the host of host@backend#pool (cinderblock)"),
)
DEFAULT_HOST = "cinderblock"


def option_of(field: str) -> str:
    """The config-file option(s) that set ``field``, as ``[section] name``, or ""."""
    named = [str(o) for o in (*OPTIONS, *POOL_OPTIONS) if o.field == field]
    return ", ".join(dict.fromkeys(named))


def _opt(kind: str, name: str, **kwargs: Any) -> cfg.Opt:
    from oslo_config import cfg

    kinds: dict[str, type[cfg.Opt]] = {
        "str": cfg.StrOpt,
        "int": cfg.IntOpt,
        "float": cfg.FloatOpt,
        "bool": cfg.BoolOpt,
        "list": cfg.ListOpt,
    }
    return kinds[kind](name, **kwargs)


def read_config_files(paths: Sequence[Path]) -> dict[str, tuple[Any, str]]:
    """The settings ``paths`` give values to: field -> (value, ``<file> [section] option``).
    Options no file sets are left out (their defaults are Settings').

    Raises:
        ConfigFileError: see the class.
    """
    reader = _Reader([str(p) for p in paths])
    found: dict[str, tuple[Any, str]] = {}
    for option in OPTIONS:
        given = reader.get(option.section, option.name)
        if given is not None:
            value, where = given
            try:
                found[option.field] = (option.convert(value), where)
            except ValueError as err:
                raise ConfigFileError(f"{where}: {err}") from None
    pools = _pools(reader)
    if pools is not None:
        found["pools"] = pools
    return found


_KIND_NAMES = {"int": "an integer", "float": "a number", "bool": "a boolean", "list": "a list"}


class _Reader:
    """The files parsed by oslo.config: typed values, each with the file it came from."""

    def __init__(self, files: list[str]) -> None:
        from oslo_config import cfg

        self.files = files
        self.conf = cfg.ConfigOpts()
        self.kinds: dict[tuple[str, str], str] = {}
        self.parsed: list[tuple[str, dict[str, dict[str, list[str]]]]] | None = None
        for option in OPTIONS:
            kwargs: dict[str, Any] = {"help": Settings.model_fields[option.field].description}
            if option.choices:
                kwargs["choices"] = option.choices
            self.register(option.section, option.name, option.kind, **kwargs)
        for option in POOL_OPTIONS:
            self.register(option.section, option.name, option.kind)
        try:
            self.conf(args=[], project="cinderblock", default_config_files=files, use_env=False)
        except cfg.ConfigFilesNotFoundError as err:
            missing = ", ".join(err.config_files)
            raise ConfigFileError(f"config file not found or unreadable: {missing}") from None
        except cfg.ConfigFileParseError as err:
            raise ConfigFileError(f"config file {err.config_file} is not INI: {err.msg}") from None

    def register(self, section: str, name: str, kind: str, **kwargs: Any) -> None:
        if (section, name) not in self.kinds:
            self.kinds[section, name] = kind
            group = None if section == "DEFAULT" else section
            self.conf.register_opt(_opt(kind, name, **kwargs), group=group)

    def get(self, section: str, name: str) -> tuple[Any, str] | None:
        """(value, ``<file> [section] name``) when a file sets the option, else None."""
        from oslo_config import cfg

        group = None if section == "DEFAULT" else section
        try:
            location = self.conf.get_location(name, group)
            value = self.conf[name] if group is None else self.conf[group][name]
        except cfg.ConfigFileValueError as err:
            detail = str(err).rpartition(" is not valid: ")[2]
            kind = _KIND_NAMES.get(self.kinds[section, name], "a valid value")
            raise ConfigFileError(
                f"{self.last_file(section, name)} [{section}] {name}: not {kind}: {detail}"
            ) from None
        if location is None or location.location != cfg.Locations.user:
            return None
        # The location's file is not the one that set the value when several are read.
        return value, f"{self.last_file(section, name)} [{section}] {name}"

    def last_file(self, section: str, name: str | None = None) -> str:
        """The last file holding ``[section]`` (and ``name`` in it): the one that counts."""
        if self.parsed is None:
            self.parsed = _parsed(self.files)
        for path, sections in reversed(self.parsed):
            if section in sections and (name is None or name in sections[section]):
                return path
        return ", ".join(self.files)


def _parsed(files: Sequence[str]) -> list[tuple[str, dict[str, dict[str, list[str]]]]]:
    """Each file's sections and raw values, as oslo.config's INI parser reads them."""
    from oslo_config import cfg

    parsed = []
    for path in files:
        sections: dict[str, dict[str, list[str]]] = {}
        cfg.ConfigParser(path, sections).parse()
        parsed.append((path, sections))
    return parsed


def _pools(reader: _Reader) -> tuple[tuple[str, ...], str] | None:
    """``enabled_backends`` and the section of each as pools, or None when no file names
    backends."""
    given = reader.get("DEFAULT", "enabled_backends")
    if given is None or not given[0]:
        return None
    backends, where = given
    host_given = reader.get("DEFAULT", "host")
    host = host_given[0] if host_given else DEFAULT_HOST
    pools: list[str] = []
    for section in backends:
        pools.extend(_backend_pools(reader, section, host))
    return tuple(pools), where


def _backend_pools(reader: _Reader, section: str, host: str) -> Iterator[str]:
    from cinderblock.drivers.base import PoolConfig

    values: dict[str, Any] = {}
    for name, kind, default, _ in BACKEND_OPTIONS:
        reader.register(section, name, kind)
        reader.register("backend_defaults", name, kind)
        own = reader.get(section, name) or reader.get("backend_defaults", name)
        values[name] = own[0] if own else default
    where = f"{reader.last_file(section)} [{section}]"
    if values["volume_driver"] != FILE_DRIVER:
        raise ConfigFileError(
            f"{where} volume_driver: {values['volume_driver']!r} is not available; "
            f"Cinderblock has one driver, {FILE_DRIVER}"
        )
    backend = values["volume_backend_name"] or section
    suffix = ":multiattach" if values["file_multiattach"] else ""
    for pool in values["file_pools"]:
        spec = f"{host}@{backend}#{pool}:{values['file_capacity_gb']}{suffix}"
        try:
            PoolConfig.parse(spec)
        except ValueError as err:
            raise ConfigFileError(f"{where}: {err}") from None
        yield spec


def ignored_options(paths: Sequence[Path]) -> list[str]:
    """``<file> [section] option`` for every option the files set that Cinderblock does not
    read (oslo.config ignores them; ``cinderblock config`` lists them)."""
    known = {(o.section, o.name) for o in (*OPTIONS, *POOL_OPTIONS)}
    backend_options = {name for name, *_ in BACKEND_OPTIONS}
    parsed = _parsed([str(p) for p in paths])
    backends = {"backend_defaults"}
    for _, sections in parsed:
        for value in sections.get("DEFAULT", {}).get("enabled_backends", []):
            backends.update(b.strip() for b in value.split(",") if b.strip())
    return [
        f"{path} [{section}] {name}"
        for path, sections in parsed
        for section, options in sections.items()
        for name in options
        if (section, name) not in known and not (section in backends and name in backend_options)
    ]
