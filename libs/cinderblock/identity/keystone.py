"""Keystone for the services: the service's own token, and callers' tokens validated.

What keystonemiddleware's auth_token does, in aiohttp: a service gets a token with its own
credentials (password auth, project scope; ``ServiceToken``), validates each caller's
``X-Auth-Token`` (and an optional ``X-Service-Token``) with
``GET /v3/auth/tokens`` (``X-Subject-Token``), caches the answer by the token's hash until
``min(expires_at, now + token_cache_time)``, and never trusts identity headers a client
sent. An unreachable Keystone is 503, a missing or invalid token 401 with
``WWW-Authenticate: Keystone uri="..."``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from cinderblock.config.settings import Settings

log = logging.getLogger(__name__)

CACHE_SIZE = 10_000
SERVICE_TOKEN_MARGIN = 60.0  # renew the API's own token this long before it expires


class KeystoneUnavailableError(Exception):
    """Keystone did not answer (connection error, timeout, 5xx): the request gets 503."""


@dataclass(frozen=True)
class TokenInfo:
    user_id: str
    user_name: str | None
    project_id: str | None  # None for a domain- or system-scoped token
    roles: frozenset[str]
    expires_at: float  # epoch seconds
    system_scope: str | None = None

    @property
    def expired(self) -> bool:
        return self.expires_at <= time.time()


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_token(body: dict[str, object]) -> TokenInfo:
    """A Keystone v3 token body (``{"token": {...}}``) as what the API needs of it."""
    token = body["token"]
    assert isinstance(token, dict)
    user = token.get("user") or {}
    project = token.get("project") or {}
    system = token.get("system") or {}
    return TokenInfo(
        user_id=str(user["id"]),
        user_name=user.get("name"),
        project_id=project.get("id"),
        roles=frozenset(str(r["name"]).lower() for r in token.get("roles") or ()),
        expires_at=_epoch(str(token["expires_at"])),
        system_scope="all" if system.get("all") else None,
    )


class KeystoneClient:
    """Requests to one Keystone; any failure to get an answer is KeystoneUnavailableError."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._session = session
        self._url = settings.keystone_auth_url.rstrip("/")

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        *,
        params: dict[str, str] | None = None,
        json: object = None,
    ) -> tuple[int, object, dict[str, str]]:
        timeout = aiohttp.ClientTimeout(total=self.settings.keystone_timeout)
        try:
            async with self._session.request(
                method, self._url + path, headers=headers, params=params, json=json, timeout=timeout
            ) as resp:
                body: object = None
                if resp.content_type == "application/json":
                    body = await resp.json()
                else:
                    await resp.read()
                if resp.status >= 500:
                    raise KeystoneUnavailableError(f"{method} {path} answered {resp.status}")
                return resp.status, body, dict(resp.headers)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise KeystoneUnavailableError(f"{method} {path}: {err!r}") from err


class ServiceToken:
    """The service's own token (password auth, scoped to its project), kept until shortly
    before it expires; ``get(renew=True)`` fetches a new one (after a 401 somewhere)."""

    def __init__(self, client: KeystoneClient) -> None:
        self._client = client
        self._token: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    async def get(self, *, renew: bool = False) -> str:
        async with self._lock:
            if not renew and self._token is not None:
                token, expires = self._token
                if expires - SERVICE_TOKEN_MARGIN > time.time():
                    return token
            s = self._client.settings
            auth = {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "name": s.keystone_username,
                                "password": s.keystone_password,
                                "domain": {"name": s.keystone_user_domain_name},
                            }
                        },
                    },
                    "scope": {
                        "project": {
                            "name": s.keystone_project_name,
                            "domain": {"name": s.keystone_project_domain_name},
                        }
                    },
                }
            }
            status, body, headers = await self._client.request(
                "POST", "/v3/auth/tokens", {}, json=auth
            )
            token = headers.get("X-Subject-Token")
            if status != 201 or not token or not isinstance(body, dict):
                raise KeystoneUnavailableError(f"service authentication answered {status}")
            try:
                expires = parse_token(body).expires_at
            except (KeyError, TypeError, ValueError, AssertionError) as err:
                raise KeystoneUnavailableError(f"unreadable service token: {err}") from err
            self._token = (token, expires)
            log.info("keystone service token obtained", extra={"user": s.keystone_username})
            return token


class KeystoneValidator:
    """Validates tokens against one Keystone; one instance per API process."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._s = settings
        self._client = KeystoneClient(settings, session)
        self._service = ServiceToken(self._client)
        self._cache: OrderedDict[str, tuple[TokenInfo | None, float]] = OrderedDict()

    @property
    def settings(self) -> Settings:
        return self._s

    @property
    def www_authenticate(self) -> str:
        uri = self._s.keystone_www_authenticate_uri or self._s.keystone_auth_url
        return f'Keystone uri="{uri}"'

    async def validate(self, token: str, *, allow_expired: bool = False) -> TokenInfo | None:
        """The token's identity, or None when Keystone says it is not valid."""
        key = hashlib.sha256(token.encode()).hexdigest() + (":x" if allow_expired else "")
        cached = self._cache.get(key)
        now = time.time()
        if cached is not None and cached[1] > now:
            self._cache.move_to_end(key)
            info = cached[0]
            if info is None or allow_expired or not info.expired:
                return info
        info = await self._fetch(token, allow_expired=allow_expired)
        until = now + self._s.keystone_token_cache_time
        if info is not None and not allow_expired:
            until = min(until, info.expires_at)
        self._cache[key] = (info, until)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return info

    async def _fetch(self, token: str, *, allow_expired: bool) -> TokenInfo | None:
        for attempt in (1, 2):
            service = await self._service.get(renew=attempt == 2)
            params = {"allow_expired": "1"} if allow_expired else {}
            headers = {"X-Auth-Token": service, "X-Subject-Token": token}
            status, body, _ = await self._client.request(
                "GET", "/v3/auth/tokens", headers, params=params
            )
            if status == 200 and isinstance(body, dict):
                try:
                    return parse_token(body)
                except (KeyError, TypeError, ValueError, AssertionError) as err:
                    raise KeystoneUnavailableError(f"unreadable token body: {err}") from err
            if status == 404:
                return None
            if status == 401 and attempt == 1:
                continue  # our own token expired early or was revoked: renew once
            raise KeystoneUnavailableError(f"token validation answered {status}")
        raise KeystoneUnavailableError("the service credentials are refused")


def service_tokens(settings: Settings, session: aiohttp.ClientSession) -> ServiceToken | None:
    """The service user's Keystone token source for calls to Nova, unless a static
    ``CINDERBLOCK_NOVA_TOKEN`` is set (or no Keystone service user is configured)."""
    if settings.nova_token or not (settings.keystone_auth_url and settings.keystone_username):
        return None
    return ServiceToken(KeystoneClient(settings, session))
