"""Settings shared by every service: read once from ``CINDERBLOCK_*`` variables, frozen,
validated at start-up, and passed explicitly to whatever needs them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_POOLS = (
    "cinderblock@file-a#pool0:1000",
    "cinderblock@file-b#pool0:1000:multiattach",
)


class SettingsError(Exception):
    """Raised at start-up when a setting is missing or malformed."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str = ""
    nats_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8776, ge=0, le=65535)
    data_dir: Path = Path(".cinderblock")
    # The project segment of /v3/{project_id}/... (Cinder's project_id_regex).
    project_id_regex: str = r"[0-9a-f\-]+"
    stream: str = "VOLUME_EVENTS"
    # Copies JetStream keeps of each stream (its num_replicas): 3 on a three-node NATS
    # cluster (one node may die without losing or refusing a message); 1 on a single server.
    stream_replicas: int = Field(default=1, ge=1, le=5)
    subject_prefix: str = ""
    pools: tuple[str, ...] = DEFAULT_POOLS
    # Fault injection for the file driver, e.g. "extend=fail,create=delay:0.2".
    inject: str = ""
    # Cinder's quota_* options: project defaults until the quota-set API overrides them.
    quota_volumes: int = 10
    quota_gigabytes: int = 1000
    quota_snapshots: int = 10
    per_volume_gigabytes: int = -1
    default_availability_zone: str = "nova"
    # Read-your-writes: how long a command waits for the read model (seconds).
    read_wait: float = 5.0
    # Saga steps: deliveries whose handler runs (the last failure compensates), and the
    # seconds a crashed worker's message waits before another worker resumes it. Workers
    # report progress every quarter of the ack wait, so a longer step is not redelivered.
    saga_max_deliver: int = 5
    saga_ack_wait: float = Field(default=5.0, gt=0)
    log_level: str = "INFO"
    log_format: str = "json"
    # Image service for os-volume_upload_image: Glance v2 at this URL (e.g.
    # http://glance:9292), or, unset, a local image store under the data dir.
    glance_url: str = ""
    glance_token: str = ""
    # Cinder's enable_force_upload: honour force=true (upload an in-use volume).
    enable_force_upload: bool = False
    # A deployer's policy.yaml overriding Cinder's default rules (unset: the defaults).
    policy_file: Path | None = None
    # Identity: Cinder's auth_strategy. "noauth" (X-Auth-Token user:project, every caller
    # admin unless X-Roles says otherwise) or "keystone" (tokens validated against Keystone
    # as keystonemiddleware's auth_token does; the option names follow [keystone_authtoken]).
    auth_strategy: Literal["noauth", "keystone"] = "noauth"
    keystone_auth_url: str = ""  # e.g. http://keystone:5000 (the identity API root)
    keystone_www_authenticate_uri: str = ""  # public URI for WWW-Authenticate (default auth_url)
    keystone_username: str = ""
    keystone_password: str = ""
    keystone_project_name: str = "service"
    keystone_user_domain_name: str = "Default"
    keystone_project_domain_name: str = "Default"
    keystone_token_cache_time: float = Field(default=300.0, ge=0)
    keystone_timeout: float = Field(default=5.0, gt=0)
    keystone_service_token_roles: tuple[str, ...] = ("service",)
    keystone_service_token_roles_required: bool = True
    # Cinder-compatible notifications (billing service): also through oslo.messaging at this
    # transport URL (e.g. rabbit://guest:guest@127.0.0.1:5672/; needs the `notify` extra),
    # on these topics and this exchange. Unset: NATS subjects only.
    notification_transport_url: str = ""
    notification_topics: str = "notifications"
    notification_exchange: str = "cinder"
    # Nova notifier: the compute API root (e.g. http://127.0.0.1:8774/v2.1); unset: off.
    # The token is sent as X-Auth-Token (a service/admin token or a noauth-style value).
    nova_url: str = ""
    nova_token: str = ""
    nova_timeout: float = Field(default=10.0, gt=0)  # seconds per request
    nova_attempts: int = Field(default=4, ge=1)  # requests per notification (5xx, timeouts)
    nova_backoff: float = Field(default=0.5, ge=0)  # first retry delay, doubled each time

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
            names = ", ".join(f"CINDERBLOCK_{n.upper()}" for n in missing)
            raise SettingsError(f"auth_strategy keystone needs {names}.")

    def require_servers(self) -> None:
        """Fail fast when a service is started without somewhere to connect."""
        missing = [n for n in ("database_url", "nats_url") if not getattr(self, n)]
        if missing:
            names = ", ".join(f"CINDERBLOCK_{n.upper()}" for n in missing)
            raise SettingsError(f"{names} must be set (or use `cinderblock dev`).")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``CINDERBLOCK_<FIELD>`` variables, then ``overrides``."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        raw = env.get(f"CINDERBLOCK_{name.upper()}")
        if raw is not None:
            values[name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as err:
        raise SettingsError(str(err)) from err


def settings_environ(settings: Settings) -> dict[str, str]:
    """``settings`` as ``CINDERBLOCK_<FIELD>`` variables: what `load_settings` reads back into
    equal settings (a child process started with them sees exactly these settings)."""
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        env[f"CINDERBLOCK_{name.upper()}"] = text
    return env
