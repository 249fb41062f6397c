"""Waiting, bounded, for the export saga's outcome of a request the handler appended: the
HTTP reply of an attach or detach waits for the backend, as Cinder's API waits on its RPC
call to the volume service (``read_wait`` seconds at most, the API's bound for a write).

The path is append → relay → NATS → saga → driver → outcome appended → projector. The wait
wakes on the projector's notifications (every projected batch moves the ``ProjectionWaiter``
watermark) and then reads the volume's events after the request from the log; no sleeps. A
re-read every ``FALLBACK`` seconds covers a projector that is down or far behind (the
outcome is in the log all the same)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cinderblock.api.deps import Deps
from cinderblock.store.eventstore import Position
from cinderblock.store.exports import Outcome, outcome_of
from cinderblock.wire.faults import Fault

FALLBACK = 0.5


async def saga_outcome(
    d: Deps, volume_id: str, at: Position, request_version: int
) -> Outcome | None:
    """The outcome of the request appended at ``at`` as version ``request_version`` of the
    volume, or None when the saga has not answered within ``read_wait`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + d.settings.read_wait
    seen = max(d.waiter.watermark, (at.tx_id, at.position))
    while True:
        # The mark is taken before the read: an outcome the read misses is projected later,
        # which moves the watermark past the mark and wakes the wait.
        mark = max(seen, d.waiter.watermark)
        outcome = await outcome_of(d.volumes.store, volume_id, request_version)
        if outcome is not None:
            return outcome
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        await d.waiter.wait_for((mark[0], mark[1] + 1), min(remaining, FALLBACK))
        seen = mark


async def saga_succeeded(
    d: Deps,
    volume_id: str,
    at: Position,
    request_version: int,
    *,
    failure: Callable[[Any], str | None] = lambda _event: None,
    no_answer: str | None = None,
) -> Outcome:
    """The successful outcome of the request, else Cinder's 500: ``failure(event)`` the
    text for a backend failure (None: Cinder's generic one), ``no_answer`` when the saga did
    not answer in time (as Cinder's RPC timeout)."""
    outcome = await saga_outcome(d, volume_id, at, request_version)
    if outcome is None:
        raise Fault(500, no_answer)
    if not outcome.succeeded:
        raise Fault(500, failure(outcome.event))
    return outcome
