"""What every command mixin of ``Volumes`` relies on from it (declared once here)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from cinderblock.domain.quota import ProjectQuota
from cinderblock.domain.volume import Volume
from cinderblock.store.eventstore import EventStore


class CommandPlumbing:
    """Attributes and helpers ``Volumes`` provides: the store, its config, visibility-checked
    loading, the project's quota aggregate, the conflict-retry loop and the settle path."""

    store: EventStore
    config: Any
    _visible: Callable[..., Awaitable[Volume]]
    _quota: Callable[[str], Awaitable[ProjectQuota]]
    _retrying: Callable[..., Awaitable[Any]]
    settle: Callable[..., Awaitable[bool]]  # the one settle path (store.settle)
