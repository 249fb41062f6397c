"""What the fuzz tests of the API share: the fault names a refusal may carry, arbitrary
JSON values, personas, running a coroutine on the system's loop from Hypothesis's thread,
and counting the events a request wrote."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import strategies as st

from tests.e2e.conftest import System

T = TypeVar("T")

FAULTS = {
    "badRequest",
    "itemNotFound",
    "forbidden",
    "conflictingRequest",
    "overLimit",
    "badMethod",
    "badMediaType",
    "notImplemented",
}
HOST = "cinderblock@file-b#pool0"

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "true", "False", "1", "0", "available", "in-use", HOST])
    | st.just("x" * 300)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=8,
)
personas = st.sampled_from([None, "member,reader", "reader", "admin"])


def in_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)


async def events_of_request(system: System, request_id: str) -> int:
    count: int = await system.pool.fetchval(
        "SELECT count(*) FROM events WHERE meta->>'request_id' = $1", request_id
    )
    return count
