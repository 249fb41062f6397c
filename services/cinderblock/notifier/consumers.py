"""The reaction of the Nova notifier: an extend of an attached volume completed → once the
read model shows the new size, tell Nova (``volume-extended`` per instance) and record the
outcome on the volume as ``Volume.NovaNotified``.

Exactly once per extend and instance, as far as this side can make it: the outcome is keyed
by the version of the ``Extended`` event and looked up before calling Nova, so a redelivery
after the outcome was saved calls nobody. Nova's answer is kept in memory until its outcome
is saved, so a save that fails (the database away) is tried again without calling Nova
again. One window remains: a crash of this process after Nova answered and before the
outcome was saved makes the redelivery call Nova a second time (Nova's handler re-reads the
size and resizes to it again; see docs/decisions.md).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg

from cinderblock.bus.jetstream import RetryLaterError
from cinderblock.domain.nova import NOT_SENT
from cinderblock.domain.volume import Volume
from cinderblock.notifier.nova import Delivery, Keepalive, NovaClient
from cinderblock.readmodels.waiter import ProjectionWaiter
from cinderblock.store.volumes import Volumes
from cinderblock.wire.envelope import ReceivedEnvelope

log = logging.getLogger(__name__)

REACTS_TO = "volume.extended"
REIMAGED = "volume.reimaged"  # of a reserved volume: Nova's rebuild waits for volume-reimaged

_EXTENDED_TX = (
    "SELECT tx_id::text::bigint FROM events WHERE originator_id = $1 AND originator_version = $2"
)
_PROJECTED_VERSION = "SELECT version FROM volumes WHERE id = $1"
# Nova's answers not saved yet, kept at most (a save fails only while the database is away).
_UNSAVED_KEPT = 10_000
# Per event type Nova is told of: the status the event must leave the volume in, and the
# outcome already recorded for the event at a version (None: Nova not told yet).
_TOLD: dict[str, tuple[str, Any]] = {
    REACTS_TO: ("in-use", Volume.nova_outcome),
    REIMAGED: ("reserved", Volume.nova_reimage_outcome),
}


def notifier_meta(env: ReceivedEnvelope) -> dict[str, Any]:
    """Who and why beside ``NovaNotified``: the extend-completed event is the cause."""
    return {
        "actor": "notifier:nova",
        "causation_id": env.id,
        "request_id": env.request_id,
        "global_request_id": env.meta.get("global_request_id"),
        "user_id": env.meta.get("user_id"),
        "project_id": env.meta.get("project_id"),
    }


class NovaNotifier:
    def __init__(
        self,
        volumes: Volumes,
        pool: asyncpg.Pool,
        waiter: ProjectionWaiter,
        nova: NovaClient,
        *,
        read_wait: float,
    ) -> None:
        self.volumes = volumes
        self.pool = pool
        self.waiter = waiter
        self.nova = nova
        self.read_wait = read_wait
        # (volume, event version, event type) → what Nova answered, until it is saved.
        self._unsaved: OrderedDict[tuple[str, int, str], Any] = OrderedDict()

    def _log(self, env: ReceivedEnvelope) -> dict[str, Any]:
        return {
            "volume_id": env.aggregate_id,
            "action": "nova_notify",
            "request_id": env.request_id,
        }

    async def _pending(self, env: ReceivedEnvelope) -> tuple[Volume, list[str]] | None:
        """The volume and the instances to tell, or None when there is nothing to do: not
        the status Nova is told about (an extend of an ``in-use`` volume, a reimage that left
        it ``reserved``), not attached to an instance, gone, or this event's outcome already
        recorded."""
        wanted = _TOLD.get(env.type)
        if wanted is None or env.data.get("status") != wanted[0]:
            return None
        volume = await self.volumes.store.load(UUID(env.aggregate_id), Volume)
        if volume is None or volume.is_deleted:
            log.info("nova not told: the volume is gone", extra=self._log(env))
            return None
        if wanted[1](volume, env.version) is not None:
            log.info("nova already told of this event", extra=self._log(env))
            return None
        servers = volume.instances_to_notify
        if not servers:
            # Detached since (say, while this service was down): no instance to tell.
            log.info("nova not told: no instance holds the volume now", extra=self._log(env))
            return None
        return volume, servers

    async def on_extended_notify_nova(
        self, env: ReceivedEnvelope, keepalive: Keepalive | None = None
    ) -> None:
        async def record(volume: Any, delivery: Any) -> None:
            await self._record(env, volume.size_gb, delivery)

        await self._tell_nova(env, keepalive, self.nova.volume_extended, record)

    async def on_reimaged_notify_nova(
        self, env: ReceivedEnvelope, keepalive: Keepalive | None = None
    ) -> None:
        """Cinder's manager tells Nova ``volume-reimaged`` when the reimaged volume is
        ``reserved`` (Nova's rebuild holds it with an attachment of the server and waits
        for this event); recorded as ``NovaReimageNotified`` once per reimage."""

        async def record(_volume: Any, delivery: Any) -> None:
            await self._record_reimage(env, delivery)

        await self._tell_nova(env, keepalive, self.nova.volume_reimaged, record)

    async def _tell_nova(
        self,
        env: ReceivedEnvelope,
        keepalive: Keepalive | None,
        send: Callable[..., Awaitable[Any]],
        record: Callable[[Any, Any], Awaitable[None]],
    ) -> None:
        """If there is something to tell Nova of the event, tell it once the read model
        shows the change (Nova reads it back), then record what Nova answered."""
        key = (env.aggregate_id, env.version, env.type)
        pending = await self._pending(env)
        if pending is None:
            self._unsaved.pop(key, None)
            return
        volume, servers = pending
        delivery = self._unsaved.get(key)
        if delivery is None:
            if keepalive is not None:
                await keepalive()
            await self._until_projected(env)
            request_id = env.meta.get("global_request_id") or env.request_id
            delivery = await send(volume.vid, servers, request_id=request_id, keepalive=keepalive)
            self._unsaved[key] = delivery
            while len(self._unsaved) > _UNSAVED_KEPT:
                self._unsaved.popitem(last=False)
        else:
            log.info("nova told already: saving its answer again", extra=self._log(env))
        await record(volume, delivery)
        self._unsaved.pop(key, None)

    async def _record_reimage(self, env: ReceivedEnvelope, delivery: Delivery) -> None:
        def record(volume: Volume) -> None:
            outcome = volume.record_nova_reimage_notification(
                env.version,
                events=delivery.events,
                attempts=delivery.attempts,
                http_status=delivery.http_status,
                answered=delivery.answered,
                reason=delivery.reason,
            )
            level = logging.INFO if outcome == "notified" else logging.WARNING
            log.log(level, "nova reimage notification %s", outcome, extra=self._log(env))

        await self.volumes.settle_saga_step(env.aggregate_id, record, meta=notifier_meta(env))

    async def _until_projected(self, env: ReceivedEnvelope) -> None:
        """Nova reads the size back from GET /volumes/{id}: wait (bounded) until the read
        model has applied the Extended event; still behind → redelivery later."""
        vid = UUID(env.aggregate_id)
        tx_id = await self.pool.fetchval(_EXTENDED_TX, vid, env.version)
        if tx_id is not None:
            await self.waiter.wait_for((tx_id, env.position), self.read_wait)
        projected = await self.pool.fetchval(_PROJECTED_VERSION, vid)
        if projected is None or projected < env.version:
            raise RetryLaterError("the volumes read model does not show the extend yet", 1.0)

    async def _record(self, env: ReceivedEnvelope, size_gb: int, delivery: Delivery) -> None:
        outcome: dict[str, str] = {}

        def record(volume: Volume) -> None:
            outcome["is"] = volume.record_nova_notification(
                env.version,
                new_size_gb=int(env.data.get("new_size_gb", size_gb)),
                events=delivery.events,
                attempts=delivery.attempts,
                http_status=delivery.http_status,
                answered=delivery.answered,
                reason=delivery.reason,
            )

        saved = await self.volumes.settle_saga_step(
            env.aggregate_id, record, meta=notifier_meta(env)
        )
        if not saved or "is" not in outcome:
            return
        level = logging.INFO if outcome["is"] == "notified" else logging.WARNING
        log.log(
            level,
            "nova notification %s",
            outcome["is"],
            extra={**self._log(env), "attempts": delivery.attempts, "reason": delivery.reason},
        )

    async def give_up(self, env: ReceivedEnvelope, error: str) -> None:
        """Deliveries used up before Nova could be asked (the read model stayed behind, or
        the store kept failing): record the failure, so the volume's history says so."""
        if env.type == REIMAGED:
            found = await self._pending(env)
            if found is not None:
                events = [{"server_uuid": s, "code": None, "result": NOT_SENT} for s in found[1]]
                await self._record_reimage(
                    env, Delivery(events, 0, None, False, f"not sent: {error}")
                )
            return
        pending = await self._pending(env)
        if pending is None:
            return
        volume, servers = pending
        events = [{"server_uuid": s, "code": None, "result": NOT_SENT} for s in servers]
        delivery = Delivery(events, 0, None, False, f"not sent: {error}")
        await self._record(env, volume.size_gb, delivery)  # no-op if recorded meanwhile
