"""The attachment safety check's question to Nova (Cinder bug #2004555, spec §7.1).

Before a user (not a service) detaches, force-detaches, terminates the connection of, or
deletes an attachment that is connected to an instance (it has an instance and connection
info), Cinder asks Nova whether the instance still uses it:
``GET /servers/{server}/os-volume_attachments/{volume}`` at compute 2.89. Nova answering
with the same attachment id → 409 ``ConflictNovaUsingAttachment`` (detach through Nova);
404 or another attachment id → allowed. With no Nova configured (``CINDERBLOCK_NOVA_URL``
unset) the question is not asked and the request is allowed. Nova unreachable → 503: the
request changes nothing and can be retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from cinderblock.api.context import RequestContext
from cinderblock.config.settings import Settings
from cinderblock.domain.errors import AttachmentConflictError
from cinderblock.domain.volume import Volume
from cinderblock.identity.keystone import KeystoneUnavailableError, service_tokens
from cinderblock.store.volumes import Volumes
from cinderblock.wire.faults import Fault

log = logging.getLogger(__name__)

MICROVERSION = "2.89"  # the volume attachment shows its attachment_id


class NovaGuard:
    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._url = settings.nova_url.rstrip("/")
        self._static = settings.nova_token
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=settings.nova_timeout)
        self._tokens = service_tokens(settings, session)

    async def check(
        self,
        ctx: RequestContext,
        volumes: Volumes,
        volume_id: str,
        attachment_id: str | None,
        authorize: Callable[[Volume], None],
    ) -> None:
        """Raise 409 when Nova says the instance still uses the attachment. The volume is
        looked up and the caller authorized first (404/403 as the command itself would
        answer), so Nova is never asked on behalf of someone who may not act."""
        if ctx.is_service:
            return
        volume = await volumes.get(ctx.caller, volume_id)
        authorize(volume)
        row = _target(volume.attachments, attachment_id)
        if row is None:
            return  # no single attachment to ask about: the domain's own checks decide
        target_id, attachment = row
        server = attachment.get("instance_uuid")
        if not server or not attachment.get("connection_info"):
            return  # not connected to a VM: nothing for Nova to protect
        nova_attachment = await self._nova_attachment(server, volume_id, ctx.request_id)
        if nova_attachment is not None and nova_attachment == target_id:
            log.error(
                "user call to delete an in-use attachment refused (Nova uses it)",
                extra={"volume_id": volume_id, "request_id": ctx.request_id, "server": server},
            )
            raise AttachmentConflictError(
                f"Detach volume from instance {server} using the Compute API"
            )

    async def _nova_attachment(self, server: str, volume_id: str, request_id: str) -> str | None:
        """Nova's attachment id of the volume on the server; None when Nova knows none."""
        url = f"{self._url}/servers/{server}/os-volume_attachments/{volume_id}"
        renewed = False
        while True:
            headers = {
                "Accept": "application/json",
                "X-OpenStack-Nova-API-Version": MICROVERSION,
                "OpenStack-API-Version": f"compute {MICROVERSION}",
                "X-OpenStack-Request-ID": request_id,
            }
            try:
                if self._tokens is not None:
                    headers["X-Auth-Token"] = await self._tokens.get(renew=renewed)
                elif self._static:
                    headers["X-Auth-Token"] = self._static
                async with self._session.get(url, headers=headers, timeout=self._timeout) as r:
                    status = r.status
                    body: Any = await r.json() if r.content_type == "application/json" else None
            except (aiohttp.ClientError, TimeoutError, ValueError, KeystoneUnavailableError) as err:
                log.error("nova unreachable for the attachment check: %s", err)
                raise Fault(
                    503, "Nova is unavailable to confirm the attachment is unused."
                ) from err
            if status == 401 and self._tokens is not None and not renewed:
                renewed = True
                continue
            if status == 404:
                return None
            if status == 200 and isinstance(body, Mapping):
                found = body.get("volumeAttachment") or {}
                return str(found.get("attachment_id") or "") or None
            raise Fault(503, f"Nova answered {status} to the attachment check.")


def _target(
    attachments: Mapping[str, Mapping[str, Any]], attachment_id: str | None
) -> tuple[str, Mapping[str, Any]] | None:
    if attachment_id is None:
        if len(attachments) != 1:
            return None
        return next(iter(attachments.items()))
    row = attachments.get(attachment_id)
    return None if row is None else (attachment_id, row)
