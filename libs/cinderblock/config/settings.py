"""Settings shared by every service: read once, frozen, validated at start-up, and passed
explicitly to whatever needs them. Each comes from, last one winning: its default, the
config files (``--config-file``, cinder.conf's INI form, ``cinderblock.config.files``), a
``CINDERBLOCK_<FIELD>`` environment variable, a command-line option."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_POOLS = (
    "cinderblock@file-a#pool0:1000",
    "cinderblock@file-b#pool0:1000:multiattach",
)
ENV_PREFIX = "CINDERBLOCK_"


class SettingsError(Exception):
    """Raised at start-up when a setting is missing or malformed."""


class Settings(BaseModel):
    """Every setting, with the help text the reference (docs/configuration.md) prints."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str = Field(
        default="",
        description="PostgreSQL holding the event log and read models, e.g. "
        "postgresql://cinderblock:secret@db:5432/cinderblock (asyncpg's DSN form).",
    )
    nats_url: str = Field(
        default="",
        description="NATS server(s) with JetStream, comma-separated for a cluster "
        "(nats://n1:4222,nats://n2:4222,nats://n3:4222).",
    )
    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=8776, ge=0, le=65535, description="Port the API listens on.")
    data_dir: Path = Field(
        default=Path(".cinderblock"),
        description="Where the file driver keeps volumes (volumes/), the local image store "
        "keeps images (images/), and `cinderblock dev` its embedded PostgreSQL and NATS.",
    )
    project_id_regex: str = Field(
        default=r"[0-9a-f\-]+",
        description="What the project segment of /v3/{project_id}/... may hold.",
    )
    stream: str = Field(default="VOLUME_EVENTS", description="The JetStream stream of events.")
    stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="Copies JetStream keeps of each stream: 3 on a three-node NATS cluster "
        "(one node may die without losing or refusing a message), 1 on a single server.",
    )
    subject_prefix: str = Field(
        default="",
        description="Prefix of every NATS subject and durable (several systems sharing one NATS).",
    )
    pools: tuple[str, ...] = Field(
        default=DEFAULT_POOLS,
        description="File-driver pools, comma-separated host@backend#pool:capacity_gb"
        "[:multiattach]. In a config file: enabled_backends and a section per backend.",
    )
    inject: str = Field(
        default="",
        description="File-driver fault injection, e.g. extend=fail,create=delay:0.2 (tests "
        "and demonstrations only).",
    )
    quota_volumes: int = Field(default=10, description="Default volumes per project.")
    quota_gigabytes: int = Field(default=1000, description="Default GiB per project.")
    quota_snapshots: int = Field(default=10, description="Default snapshots per project.")
    per_volume_gigabytes: int = Field(
        default=-1, description="Largest volume in GiB (-1: no limit)."
    )
    default_availability_zone: str = Field(
        default="nova", description="Availability zone of volumes created without one."
    )
    read_wait: float = Field(
        default=5.0,
        description="Read-your-writes: seconds a command waits for the read model.",
    )
    saga_max_deliver: int = Field(
        default=5,
        description="Deliveries of a saga step whose handler runs; the last failure compensates.",
    )
    saga_ack_wait: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a crashed worker's message waits before another worker resumes "
        "it (workers report progress every quarter of it, so longer steps are not "
        "redelivered).",
    )
    log_level: str = Field(default="INFO", description="Log level (DEBUG, INFO, WARNING...).")
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="Log lines as json or text; auto: text on a terminal."
    )
    glance_url: str = Field(
        default="",
        description="Glance v2 for uploads to and volumes from images, e.g. "
        "http://glance:9292; unset: a local image store under the data dir.",
    )
    glance_token: str = Field(default="", description="X-Auth-Token sent to Glance.")
    enable_force_upload: bool = Field(
        default=False, description="Honour force=true in os-volume_upload_image (in-use)."
    )
    policy_file: Path | None = Field(
        default=None,
        description="A deployer's policy.yaml overriding Cinder's default rules.",
    )
    auth_strategy: Literal["noauth", "keystone"] = Field(
        default="noauth",
        description="noauth (X-Auth-Token user:project, every caller admin unless X-Roles "
        "says otherwise) or keystone (tokens validated as keystonemiddleware does).",
    )
    keystone_auth_url: str = Field(
        default="", description="Keystone's identity API root, e.g. http://keystone:5000."
    )
    keystone_www_authenticate_uri: str = Field(
        default="", description="Public Keystone URI for WWW-Authenticate (default: auth url)."
    )
    keystone_username: str = Field(default="", description="The service user.")
    keystone_password: str = Field(default="", description="The service user's password.")
    keystone_project_name: str = Field(default="service", description="The service project.")
    keystone_user_domain_name: str = Field(default="Default", description="The user's domain.")
    keystone_project_domain_name: str = Field(
        default="Default", description="The service project's domain."
    )
    keystone_token_cache_time: float = Field(
        default=300.0, ge=0, description="Seconds a validated token's answer is cached."
    )
    keystone_timeout: float = Field(
        default=5.0, gt=0, description="Seconds per request to Keystone."
    )
    keystone_service_token_roles: tuple[str, ...] = Field(
        default=("service",),
        description="Roles that make an X-Service-Token a service token (comma-separated).",
    )
    keystone_service_token_roles_required: bool = Field(
        default=True, description="An X-Service-Token without those roles is refused."
    )
    notification_transport_url: str = Field(
        default="",
        description="Also send Cinder's notifications through oslo.messaging at this URL, "
        "e.g. rabbit://guest:guest@rabbit:5672/ (the notify extra); unset: NATS only.",
    )
    notification_topics: str = Field(
        default="notifications", description="oslo.messaging topics, comma-separated."
    )
    notification_exchange: str = Field(
        default="cinder", description="oslo.messaging exchange of the notifications."
    )
    nova_url: str = Field(
        default="",
        description="Nova's compute API root (e.g. http://nova:8774/v2.1) to tell of extends "
        "and reimages; unset: the notifier is idle.",
    )
    nova_token: str = Field(
        default="", description="X-Auth-Token sent to Nova (a service or admin token)."
    )
    nova_timeout: float = Field(default=10.0, gt=0, description="Seconds per Nova request.")
    nova_attempts: int = Field(
        default=4, ge=1, description="Requests per notification (5xx and timeouts retried)."
    )
    nova_backoff: float = Field(
        default=0.5, ge=0, description="First retry delay in seconds, doubled each time."
    )

    @field_validator("pools", "keystone_service_token_roles", mode="before")
    @classmethod
    def _split_pools(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("policy_file", mode="before")
    @classmethod
    def _empty_policy_file(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def quota_limits(self) -> dict[str, int]:
        return {
            "volumes": self.quota_volumes,
            "gigabytes": self.quota_gigabytes,
            "snapshots": self.quota_snapshots,
            "backups": 10,
            "backup_gigabytes": 1000,
            "groups": 10,
            "per_volume_gigabytes": self.per_volume_gigabytes,
        }

    def subject(self, tail: str) -> str:
        return f"{self.subject_prefix}{tail}"

    def require_keystone(self) -> None:
        """With auth_strategy keystone, the API cannot start without where and as whom."""
        if self.auth_strategy != "keystone":
            return
        needed = ("keystone_auth_url", "keystone_username", "keystone_password")
        missing = [n for n in needed if not getattr(self, n)]
        if missing:
            names = ", ".join(setting_names(n) for n in missing)
            raise SettingsError(f"auth_strategy keystone needs {names}.")

    def require_servers(self) -> None:
        """Fail fast when a service is started without somewhere to connect."""
        missing = [n for n in ("database_url", "nats_url") if not getattr(self, n)]
        if missing:
            names = ", ".join(setting_names(n) for n in missing)
            raise SettingsError(f"{names} must be set (or use `cinderblock dev`).")


def env_name(field: str) -> str:
    """The environment variable of a setting: ``CINDERBLOCK_<FIELD>``."""
    return f"{ENV_PREFIX}{field.upper()}"


def setting_names(field: str) -> str:
    """How an operator sets ``field``: its variable, and its config-file option if any."""
    from cinderblock.config.files import option_of

    option = option_of(field)
    return env_name(field) + (f" ({option})" if option else "")


@dataclass(frozen=True)
class Resolved:
    """Settings and where each came from: ``default``, ``file <path> [section] option``,
    ``environment CINDERBLOCK_<FIELD>`` or ``command line``."""

    settings: Settings
    origins: Mapping[str, str]


def resolve_settings(
    environ: Mapping[str, str] | None = None,
    *,
    config_files: Sequence[Path] = (),
    **overrides: Any,
) -> Resolved:
    """Defaults, then ``config_files`` (later files win), then ``CINDERBLOCK_<FIELD>``
    variables, then ``overrides`` (command-line options; None means not given).

    Raises:
        SettingsError: a file is missing or unreadable, or a value is malformed (the message
            names the option and where it came from).
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origins: dict[str, str] = dict.fromkeys(Settings.model_fields, "default")
    if config_files:
        from cinderblock.config.files import read_config_files

        for name, (value, where) in read_config_files(config_files).items():
            values[name], origins[name] = value, f"file {where}"
    for name in Settings.model_fields:
        raw = env.get(env_name(name))
        if raw is not None:
            values[name], origins[name] = raw, f"environment {env_name(name)}"
    for name, value in overrides.items():
        if value is not None:
            values[name], origins[name] = value, "command line"
    try:
        return Resolved(Settings(**values), origins)
    except ValidationError as err:
        raise SettingsError(_explain(err, origins)) from err


def _explain(err: ValidationError, origins: Mapping[str, str]) -> str:
    """One line per bad value, naming the setting and where its value came from."""
    lines = []
    for error in err.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "?"
        lines.append(f"{field} (from {origins.get(field, 'default')}): {error['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    config_files: Sequence[Path] = (),
    **overrides: Any,
) -> Settings:
    """The settings ``resolve_settings`` resolves, without their origins."""
    return resolve_settings(environ, config_files=config_files, **overrides).settings


# Settings shown masked: whole values, and URLs whose password alone is hidden.
SECRET_FIELDS = frozenset({"keystone_password", "glance_token", "nova_token"})
URL_FIELDS = frozenset({"database_url", "nats_url", "notification_transport_url"})
MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<lead>(?:://|,)[^:/@,?#]*):[^@/,?#]*@")
_QUERY_PASSWORD = re.compile(r"(?P<lead>[?&]password=)[^&]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with every password hidden: ``user:pass@`` (each host of a list) and a
    ``password=`` query parameter."""
    url = _URL_PASSWORD.sub(lambda m: f"{m['lead']}:{MASK}@", url)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['lead']}{MASK}", url)


def masked(settings: Settings) -> dict[str, Any]:
    """Every setting's value as it may be shown (``cinderblock config``, logs)."""
    shown: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name in SECRET_FIELDS and value:
            value = MASK
        elif name in URL_FIELDS and value:
            value = mask_url(value)
        shown[name] = value
    return shown


def settings_environ(settings: Settings) -> dict[str, str]:
    """``settings`` as ``CINDERBLOCK_<FIELD>`` variables: what `load_settings` reads back into
    equal settings (a child process started with them sees exactly these settings)."""
    return {env_name(name): setting_text(getattr(settings, name)) for name in Settings.model_fields}


def setting_text(value: Any) -> str:
    """A setting's value as its variable holds it: ``true``/``false``, lists comma-separated,
    unset as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)
