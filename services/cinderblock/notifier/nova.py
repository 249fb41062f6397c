"""Nova's ``POST /os-server-external-events`` at compute microversion 2.51: one request with
one ``volume-extended`` event per instance (``volume-reimaged`` at 2.93 after a reimage),
5xx/429/timeouts retried with exponential back-off, every other answer final. What each
instance got is read from the per-event ``code`` of Nova's answer (200/207), as Cinder's
``compute/nova.py:_send_events`` does."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from cinderblock.config.settings import Settings
from cinderblock.domain.nova import INSTANCE_NOT_FOUND, NOT_SENT, result_of_code
from cinderblock.identity.keystone import KeystoneUnavailableError, ServiceToken

log = logging.getLogger(__name__)

MICROVERSION = "2.51"  # volume-extended is accepted from 2.51
REIMAGED_MICROVERSION = "2.93"  # volume-reimaged is accepted from 2.93 (Cinder sends 2.93)
BACKOFF_CAP = 8.0  # seconds; the longest wait between two attempts
_GLOBAL_ID = re.compile(r"^req-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")

Keepalive = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class NovaConfig:
    url: str  # the compute API root, e.g. http://127.0.0.1:8774/v2.1
    token: str = ""
    timeout: float = 10.0
    attempts: int = 4
    backoff: float = 0.5

    @classmethod
    def of(cls, settings: Settings) -> NovaConfig:
        return cls(
            settings.nova_url,
            settings.nova_token,
            settings.nova_timeout,
            settings.nova_attempts,
            settings.nova_backoff,
        )

    @property
    def events_url(self) -> str:
        return f"{self.url.rstrip('/')}/os-server-external-events"

    def delay(self, attempt: int) -> float:
        """Wait after failed attempt ``attempt`` (1-based): doubling from backoff, capped."""
        return float(min(self.backoff * 2 ** (attempt - 1), BACKOFF_CAP))

    @property
    def longest_call(self) -> float:
        """The longest one attempt plus the wait after it can take (the consumer's ack
        wait must exceed it: the message is kept in progress before every attempt)."""
        return self.timeout + self.delay(max(self.attempts - 1, 1))


@dataclass(frozen=True)
class Delivery:
    """What became of one notification: per instance ``{server_uuid, code, result}``."""

    events: list[dict[str, Any]]
    attempts: int
    http_status: int | None
    answered: bool  # Nova gave a usable per-event answer (200/207)
    reason: str | None


def _not_delivered(
    servers: Sequence[str], result: str, code: int | None = None
) -> list[dict[str, Any]]:
    return [{"server_uuid": s, "code": code, "result": result} for s in servers]


class NovaClient:
    """``tokens``: the service's Keystone token (sent instead of ``config.token``), renewed
    once when Nova answers 401."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: NovaConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tokens: ServiceToken | None = None,
    ) -> None:
        self.session = session
        self.config = config
        self.sleep = sleep
        self.tokens = tokens

    def headers(self, request_id: str | None, microversion: str = MICROVERSION) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-OpenStack-Nova-API-Version": microversion,
            "OpenStack-API-Version": f"compute {microversion}",
            "User-Agent": "cinderblock-notifier",
        }
        if self.config.token:
            headers["X-Auth-Token"] = self.config.token
        if request_id and _GLOBAL_ID.match(request_id):  # Nova's global request id rule
            headers["X-OpenStack-Request-ID"] = request_id
        return headers

    async def volume_extended(
        self,
        volume_id: str,
        servers: Sequence[str],
        *,
        request_id: str | None = None,
        keepalive: Keepalive | None = None,
    ) -> Delivery:
        """Tell Nova the volume grew, for each server; never raises for Nova's failures."""
        return await self._send(
            "volume-extended", MICROVERSION, volume_id, servers, request_id, keepalive
        )

    async def volume_reimaged(
        self,
        volume_id: str,
        servers: Sequence[str],
        *,
        request_id: str | None = None,
        keepalive: Keepalive | None = None,
    ) -> Delivery:
        """Tell Nova the volume holds the image now (its rebuild waits for this event),
        for each server; never raises for Nova's failures."""
        return await self._send(
            "volume-reimaged", REIMAGED_MICROVERSION, volume_id, servers, request_id, keepalive
        )

    async def _send(
        self,
        name: str,
        microversion: str,
        volume_id: str,
        servers: Sequence[str],
        request_id: str | None,
        keepalive: Keepalive | None,
    ) -> Delivery:
        body = {"events": [{"name": name, "server_uuid": s, "tag": volume_id} for s in servers]}
        headers = self.headers(request_id, microversion)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        status: int | None = None
        reason = "no attempt made"
        renew = renewed = False
        for attempt in range(1, self.config.attempts + 1):
            if keepalive is not None:
                await keepalive()
            try:
                if self.tokens is not None:
                    headers["X-Auth-Token"] = await self.tokens.get(renew=renew)
                    renew = False
                async with self.session.post(
                    self.config.events_url, json=body, headers=headers, timeout=timeout
                ) as resp:
                    status, text = resp.status, await resp.text()
            except KeystoneUnavailableError as err:
                status = None
                reason = f"no service token from Keystone: {err}"
            except (aiohttp.ClientError, TimeoutError) as err:
                status = None
                reason = f"no answer: {type(err).__name__} {err}".strip()
                if isinstance(err, TimeoutError):
                    reason = f"no answer within {self.config.timeout:g}s"
            else:
                if status == 401 and self.tokens is not None and not renewed:
                    renew = renewed = True  # the token expired or was revoked: once more
                    reason = "Nova answered 401"
                    continue
                if status in (200, 207):
                    return self._answered(servers, status, text, attempt)
                if status == 404:  # Nova before bug 1855752: every event failed
                    return Delivery(
                        _not_delivered(servers, INSTANCE_NOT_FOUND, 404),
                        attempt,
                        status,
                        False,
                        "Nova answered 404: no such instance (or CINDERBLOCK_NOVA_URL is not "
                        "the compute API root)",
                    )
                reason = f"Nova answered {status}: {text[:200]}"
                if status < 500 and status != 429:
                    return Delivery(
                        _not_delivered(servers, NOT_SENT), attempt, status, False, reason
                    )
            log.warning(
                "nova notification failed, %s",
                "retrying" if attempt < self.config.attempts else "giving up",
                extra={"volume_id": volume_id, "attempt": attempt, "error": reason},
            )
            if attempt < self.config.attempts:
                await self.sleep(self.config.delay(attempt))
        attempts = self.config.attempts
        return Delivery(
            _not_delivered(servers, NOT_SENT),
            attempts,
            status,
            False,
            f"gave up after {attempts} attempts; last: {reason}",
        )

    def _answered(self, servers: Sequence[str], status: int, text: str, attempt: int) -> Delivery:
        """Per-instance results from Nova's echo of the events (``code`` on each)."""
        try:
            answer = json.loads(text)
            echoed = answer["events"]
            if not isinstance(echoed, list):
                raise TypeError("events is not a list")
        except (ValueError, KeyError, TypeError) as err:
            reason = f"Nova answered {status} with an unusable body ({err})"
            return Delivery(_not_delivered(servers, NOT_SENT), attempt, status, False, reason)
        codes = {e.get("server_uuid"): e.get("code") for e in echoed if isinstance(e, dict)}
        events = [
            {"server_uuid": s, "code": codes.get(s), "result": result_of_code(codes.get(s))}
            for s in servers
        ]
        refused = [e for e in events if e["code"] != 200]
        reason = (
            "; ".join(f"{e['server_uuid']}: {e['result']} ({e['code']})" for e in refused)
            if refused
            else None
        )
        return Delivery(events, attempt, status, True, reason)
