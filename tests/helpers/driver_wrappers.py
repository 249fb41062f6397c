"""Driver (and image service) wrappers the saga tests share: a worker that dies right after
a step did its work, and one that counts (and optionally fails) a step's calls."""

from __future__ import annotations

import asyncio
from typing import Any


class DiesAfter:
    """A driver (or image service) whose worker 'dies' right after ``step`` did its work
    for ``subject`` (the step's first argument: a volume, snapshot or image id): the call
    never returns, so the completion event is never recorded and the message never acked.
    Other subjects pass through (the stream carries other tests' events too)."""

    def __init__(self, inner: Any, step: str, subject: str) -> None:
        self.inner = inner
        self.step = step
        self.subject = str(subject)
        self.calls = 0
        self.done = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.step:
            return attr

        async def step(*args: Any, **kwargs: Any) -> Any:
            result = await attr(*args, **kwargs)
            if str(args[0]) == self.subject:
                self.calls += 1
                self.done.set()
                await asyncio.Event().wait()
            return result

        return step


class Counting:
    """Counts (and optionally fails) the ``step`` calls for ``subject``."""

    def __init__(
        self, inner: Any, step: str, subject: str, failure: Exception | None = None
    ) -> None:
        self.inner = inner
        self.step = step
        self.subject = str(subject)
        self.calls = 0
        self.failure = failure

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.step:
            return attr

        async def step(*args: Any, **kwargs: Any) -> Any:
            if str(args[0]) == self.subject:
                self.calls += 1
                if self.failure is not None:
                    raise self.failure
            return await attr(*args, **kwargs)

        return step
