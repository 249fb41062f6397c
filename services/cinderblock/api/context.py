"""Who is asking, at which microversion, under which request id."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cinderblock.store.volumes import Caller
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.policy import Credentials
from cinderblock.wire.views import ViewContext


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    global_request_id: str | None
    user_id: str
    project_id: str
    roles: frozenset[str]
    is_admin: bool
    version: APIVersion
    base_url: str
    project_in_url: str | None
    remote: str | None = None
    method: str | None = None
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Roles of a validated X-Service-Token (Keystone mode): how Nova proves it is Nova.
    service_roles: frozenset[str] = frozenset()

    @property
    def is_service(self) -> bool:
        """A service (Nova) is asking: the `service` role on the caller or its service token."""
        return "service" in self.roles or "service" in self.service_roles

    @property
    def caller(self) -> Caller:
        return Caller(self.user_id, self.project_id, self.is_admin)

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.user_id, self.project_id, self.roles, self.is_admin)

    @property
    def view(self) -> ViewContext:
        return ViewContext(
            version=self.version,
            is_admin=self.is_admin,
            roles=self.roles,
            base_url=self.base_url,
            project_in_url=self.project_in_url,
        )

    def meta(self, action: str) -> dict[str, Any]:
        """Who and why, stored beside every event this request appends."""
        return {
            "request_id": self.request_id,
            "global_request_id": self.global_request_id,
            "user_id": self.user_id,
            "project_id": self.project_id,
            "roles": sorted(self.roles),
            "is_admin": self.is_admin,
            "action": action,
            "microversion": str(self.version),
            "remote_addr": self.remote,
            "http_method": self.method,
            "request_path": self.path,
        }
