"""A driver wrapper that injects failures and delays, and records every call, for tests."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, NamedTuple

from cinderblock.drivers.base import BackendError, CapacityError, PoolStats, VolumeDriver

log = logging.getLogger(__name__)

OPERATIONS = ("create", "extend", "delete", "unmanage")
"""The driver steps a fault can be injected into, in canonical order."""

INJECTED_REASON = "injected failure"

FaultKind = Literal["fail", "capacity", "delay"]

_GRAMMAR = "fail, fail:N (N >= 1), capacity or delay:SECONDS (SECONDS >= 0)"


@dataclass(frozen=True)
class Fault:
    """What happens to one operation: ``fail`` (every call, or the first ``times``),
    ``capacity``, or ``delay`` by ``seconds`` before passing through."""

    kind: FaultKind
    times: int | None = None
    seconds: float = 0.0

    @classmethod
    def parse(cls, mode: str) -> Fault:
        """Read one mode (``fail``, ``fail:2``, ``capacity``, ``delay:0.2``).

        Raises:
            ValueError: the mode is none of these.
        """
        name, colon, arg = mode.strip().partition(":")
        if name == "fail" and not colon:
            return cls("fail")
        if name == "capacity" and not colon:
            return cls("capacity")
        if name == "fail" and arg.isascii() and arg.strip().isdigit() and int(arg) >= 1:
            return cls("fail", times=int(arg))
        if name == "delay" and colon:
            try:
                seconds = float(arg)
            except ValueError:
                seconds = math.nan
            if math.isfinite(seconds) and seconds >= 0:
                return cls("delay", seconds=seconds)
        raise ValueError(f"fault mode {mode!r} is invalid; expected {_GRAMMAR}")

    def __str__(self) -> str:
        if self.kind == "delay":
            return f"delay:{self.seconds:g}"
        if self.times is not None:
            return f"fail:{self.times}"
        return self.kind

    def describe(self) -> str:
        if self.kind == "delay":
            return f"delay {self.seconds:g}s"
        if self.kind == "capacity":
            return "raise CapacityError on every call"
        if self.times is not None:
            return f"fail the first {self.times} call(s)"
        return "fail every call"


@dataclass(frozen=True)
class FaultPlan:
    """Which operations get which fault; operations not listed pass through."""

    faults: Mapping[str, Fault] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Read ``"extend=fail,create=delay:0.2,delete=fail:2"``; an empty spec means no faults.

        Raises:
            ValueError: an item is not ``operation=mode``, the operation is unknown or
                repeated, or the mode is invalid.
        """
        faults: dict[str, Fault] = {}
        if not spec.strip():
            return cls()
        for item in spec.split(","):
            operation, equals, mode = (part.strip() for part in item.partition("="))
            if not equals or not operation or not mode:
                raise ValueError(f"fault plan item {item!r} must look like operation=mode")
            if operation not in OPERATIONS:
                known = ", ".join(OPERATIONS)
                raise ValueError(f"fault plan names unknown operation {operation!r}; use {known}")
            if operation in faults:
                raise ValueError(f"fault plan names operation {operation!r} twice")
            try:
                faults[operation] = Fault.parse(mode)
            except ValueError as err:
                raise ValueError(f"fault plan item {item.strip()!r}: {err}") from None
        return cls(MappingProxyType(faults))

    def fault_for(self, operation: str) -> Fault | None:
        return self.faults.get(operation)

    def describe(self) -> str:
        """One line for logs, e.g. ``extend: fail every call; delete: delay 0.2s``."""
        if not self.faults:
            return "no faults"
        return "; ".join(f"{op}: {self.faults[op].describe()}" for op in self._ordered())

    def __str__(self) -> str:
        """The canonical spec, which `parse` reads back."""
        return ",".join(f"{op}={self.faults[op]}" for op in self._ordered())

    def _ordered(self) -> list[str]:
        return [op for op in OPERATIONS if op in self.faults]


class DriverCall(NamedTuple):
    """One call a FaultInjectingDriver received (compares equal to a plain 3-tuple)."""

    operation: str
    volume_id: str
    step_key: str


class FaultInjectingDriver:
    """Wraps any VolumeDriver and applies a FaultPlan before each step.

    Attributes:
        calls: every create/extend/delete call received, in order, injected
            failures included.
        injected: the calls that failed by injection (never reached the inner driver).
    """

    def __init__(self, inner: VolumeDriver, plan: FaultPlan | None = None) -> None:
        self.inner = inner
        self.plan = plan if plan is not None else FaultPlan()
        self.calls: list[DriverCall] = []
        self.injected: list[DriverCall] = []
        self._failed: dict[str, int] = {}

    def count(self, operation: str) -> int:
        """How many calls of ``operation`` were received."""
        return sum(1 for call in self.calls if call.operation == operation)

    async def create_volume(
        self, volume_id: str, size_gb: int, *, location: str | None, step_key: str
    ) -> str:
        await self._apply("create", volume_id, step_key)
        return await self.inner.create_volume(
            volume_id, size_gb, location=location, step_key=step_key
        )

    async def extend_volume(
        self, volume_id: str, location: str, new_size_gb: int, *, step_key: str
    ) -> None:
        await self._apply("extend", volume_id, step_key)
        await self.inner.extend_volume(volume_id, location, new_size_gb, step_key=step_key)

    async def delete_volume(self, volume_id: str, location: str, *, step_key: str) -> None:
        await self._apply("delete", volume_id, step_key)
        await self.inner.delete_volume(volume_id, location, step_key=step_key)

    async def unmanage_volume(self, volume_id: str, location: str, *, step_key: str) -> None:
        await self._apply("unmanage", volume_id, step_key)
        await self.inner.unmanage_volume(volume_id, location, step_key=step_key)

    def volume_path(self, volume_id: str, location: str) -> Path:
        return self.inner.volume_path(volume_id, location)

    def pools(self) -> list[PoolStats]:
        return self.inner.pools()

    async def _apply(self, operation: str, volume_id: str, step_key: str) -> None:
        """Record the call, then delay it, fail it, or let it through."""
        call = DriverCall(operation, volume_id, step_key)
        self.calls.append(call)
        fault = self.plan.fault_for(operation)
        if fault is None:
            return
        if fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            return
        if fault.times is not None:
            if self._failed.get(operation, 0) >= fault.times:
                return
            self._failed[operation] = self._failed.get(operation, 0) + 1
        self.injected.append(call)
        extra = {"volume_id": volume_id, "action": operation, "step_key": step_key}
        log.info("injecting %s into %s of volume %s", fault, operation, volume_id, extra=extra)
        if fault.kind == "capacity":
            raise CapacityError(operation, volume_id, "injected capacity shortage")
        raise BackendError(operation, volume_id, INJECTED_REASON)
