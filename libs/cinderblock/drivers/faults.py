"""A driver wrapper that injects failures and delays, and records every call, for tests."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, TypeVar

from cinderblock.drivers import copying
from cinderblock.drivers.base import (
    BackendError,
    CapacityError,
    ExportSpec,
    PoolStats,
    VolumeDriver,
    before_verify,
)
from cinderblock.drivers.encryption import EncryptionHeader
from cinderblock.drivers.reimage import ImageWriter

log = logging.getLogger(__name__)

OPERATIONS = (
    "create",
    "extend",
    "delete",
    "unmanage",
    "migrate",
    "snapshot",
    "delete_snapshot",
    "revert",
    "retype",
    "reimage",
    "attach",
    "detach",
)
"""The driver steps a fault can be injected into, in canonical order (``retype`` is the
re-encrypting copy, ``attach`` an export to a connector, ``detach`` its removal)."""

CORRUPTIBLE = ("migrate", "snapshot", "revert", "retype")
"""The steps that copy bytes, which the ``corrupt`` fault applies to."""

T = TypeVar("T")

INJECTED_REASON = "injected failure"

FaultKind = Literal["fail", "capacity", "delay", "corrupt"]

_GRAMMAR = "fail, fail:N (N >= 1), capacity, delay:SECONDS (SECONDS >= 0), corrupt or corrupt:N"

_COUNTABLE: dict[str, FaultKind] = {"fail": "fail", "corrupt": "corrupt"}
"""The modes that take an optional ``:N`` (only the first N calls)."""


@dataclass(frozen=True)
class Fault:
    """What happens to one operation: ``fail`` (every call, or the first ``times``),
    ``capacity``, ``delay`` by ``seconds`` before passing through, or ``corrupt`` (the
    copy of every call, or of the first ``times``)."""

    kind: FaultKind
    times: int | None = None
    seconds: float = 0.0

    @classmethod
    def parse(cls, mode: str) -> Fault:
        """Read one mode (``fail``, ``fail:2``, ``capacity``, ``delay:0.2``, ``corrupt``,
        ``corrupt:1``).

        Raises:
            ValueError: the mode is none of these.
        """
        name, colon, arg = mode.strip().partition(":")
        kind: FaultKind | None = _COUNTABLE.get(name)
        if name == "capacity" and not colon:
            return cls("capacity")
        if kind is not None and not colon:
            return cls(kind)
        if kind is not None and arg.isascii() and arg.strip().isdigit() and int(arg) >= 1:
            return cls(kind, times=int(arg))
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
            return f"{self.kind}:{self.times}"
        return self.kind

    def describe(self) -> str:
        if self.kind == "delay":
            return f"delay {self.seconds:g}s"
        if self.kind == "capacity":
            return "raise CapacityError on every call"
        if self.kind == "corrupt":
            if self.times is not None:
                return f"corrupt the copy of the first {self.times} call(s)"
            return "corrupt the copy of every call"
        if self.times is not None:
            return f"fail the first {self.times} call(s)"
        return "fail every call"


@dataclass(frozen=True)
class FaultPlan:
    """Which operations get which fault; operations not listed pass through.

    Operations: ``create``, ``extend``, ``delete``, ``unmanage``, ``migrate``,
    ``snapshot``, ``delete_snapshot``, ``revert``, ``retype``, ``reimage``, ``attach``
    (``initialize_connection``), ``detach`` (``terminate_connection``). Modes:

    - ``fail``: raise ``BackendError(reason="injected failure")`` on every call;
      ``fail:N``: on the first N calls, then pass through;
    - ``capacity``: raise ``CapacityError`` on every call;
    - ``delay:SECONDS``: sleep, then pass through;
    - ``corrupt`` (``migrate``, ``snapshot``, ``revert``): the call reaches the driver
      and its copy is written, but one byte of the copy is flipped before the driver
      verifies it (via the ``before_verify`` hook), so the driver's own checksum
      verification must raise ``BackendError("checksum mismatch ...")`` and remove the
      copy; ``corrupt:N``: only on the first N calls. A call that makes no copy (the
      copy already exists, the volume already holds the snapshot) has nothing to
      corrupt.
    """

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
                fault = Fault.parse(mode)
            except ValueError as err:
                raise ValueError(f"fault plan item {item.strip()!r}: {err}") from None
            if fault.kind == "corrupt" and operation not in CORRUPTIBLE:
                only = ", ".join(CORRUPTIBLE)
                raise ValueError(
                    f"fault plan item {item.strip()!r}: corrupt applies to {only} only"
                )
            faults[operation] = fault
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
        calls: every step call received, in order, injected failures included.
        injected: the calls a fault was injected into: failed ones (they never
            reached the inner driver) and copying steps whose copy was corrupted.

    A ``delete_snapshot`` call names no volume: its DriverCall carries the snapshot id
    as ``volume_id``.
    """

    def __init__(self, inner: VolumeDriver, plan: FaultPlan | None = None) -> None:
        self.inner = inner
        self.plan = plan if plan is not None else FaultPlan()
        self.calls: list[DriverCall] = []
        self.injected: list[DriverCall] = []
        self._hits: dict[str, int] = {}

    def count(self, operation: str) -> int:
        """How many calls of ``operation`` were received."""
        return sum(1 for call in self.calls if call.operation == operation)

    async def create_volume(
        self,
        volume_id: str,
        size_gb: int,
        *,
        location: str | None,
        step_key: str,
        header: EncryptionHeader | None = None,
    ) -> str:
        await self._apply("create", volume_id, step_key)
        if header is None:  # inner drivers from before encryption take no header
            return await self.inner.create_volume(
                volume_id, size_gb, location=location, step_key=step_key
            )
        return await self.inner.create_volume(
            volume_id, size_gb, location=location, step_key=step_key, header=header
        )

    async def create_volume_from_snapshot(
        self,
        volume_id: str,
        snapshot_id: str,
        size_gb: int,
        *,
        location: str,
        step_key: str,
        header: EncryptionHeader | None = None,
    ) -> str:
        return await self._copying(
            "create",
            volume_id,
            step_key,
            lambda: self.inner.create_volume_from_snapshot(
                volume_id, snapshot_id, size_gb, location=location, step_key=step_key, header=header
            ),
        )

    async def create_cloned_volume(
        self,
        volume_id: str,
        source_volid: str,
        size_gb: int,
        *,
        location: str,
        step_key: str,
        header: EncryptionHeader | None = None,
    ) -> str:
        return await self._copying(
            "create",
            volume_id,
            step_key,
            lambda: self.inner.create_cloned_volume(
                volume_id,
                source_volid,
                size_gb,
                location=location,
                step_key=step_key,
                header=header,
            ),
        )

    async def reencrypt_volume(
        self,
        volume_id: str,
        source: str,
        destination: str,
        *,
        target: EncryptionHeader | None,
        step_key: str,
    ) -> str:
        return await self._copying(
            "retype",
            volume_id,
            step_key,
            lambda: self.inner.reencrypt_volume(
                volume_id, source, destination, target=target, step_key=step_key
            ),
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

    async def migrate_volume(
        self, volume_id: str, source: str, destination: str, *, step_key: str
    ) -> str:
        return await self._copying(
            "migrate",
            volume_id,
            step_key,
            lambda: self.inner.migrate_volume(volume_id, source, destination, step_key=step_key),
        )

    async def create_snapshot(
        self, volume_id: str, snapshot_id: str, location: str, *, step_key: str
    ) -> None:
        await self._copying(
            "snapshot",
            volume_id,
            step_key,
            lambda: self.inner.create_snapshot(volume_id, snapshot_id, location, step_key=step_key),
        )

    async def delete_snapshot(self, snapshot_id: str, location: str, *, step_key: str) -> None:
        await self._apply("delete_snapshot", snapshot_id, step_key)
        await self.inner.delete_snapshot(snapshot_id, location, step_key=step_key)

    async def revert_to_snapshot(
        self, volume_id: str, snapshot_id: str, location: str, *, step_key: str
    ) -> None:
        await self._copying(
            "revert",
            volume_id,
            step_key,
            lambda: self.inner.revert_to_snapshot(
                volume_id, snapshot_id, location, step_key=step_key
            ),
        )

    async def reimage_volume(
        self, volume_id: str, location: str, *, write: ImageWriter, step_key: str
    ) -> str:
        await self._apply("reimage", volume_id, step_key)
        return await self.inner.reimage_volume(volume_id, location, write=write, step_key=step_key)

    async def initialize_connection(
        self, volume_id: str, location: str, spec: ExportSpec, *, step_key: str
    ) -> dict[str, Any]:
        await self._apply("attach", volume_id, step_key)
        return await self.inner.initialize_connection(volume_id, location, spec, step_key=step_key)

    async def terminate_connection(
        self, volume_id: str, location: str, export_id: str, *, step_key: str
    ) -> bool:
        await self._apply("detach", volume_id, step_key)
        return await self.inner.terminate_connection(
            volume_id, location, export_id, step_key=step_key
        )

    def exports(self, volume_id: str, location: str) -> list[dict[str, Any]]:
        return self.inner.exports(volume_id, location)

    async def checksum(self, volume_id: str, location: str) -> str:
        return await self.inner.checksum(volume_id, location)

    def volume_path(self, volume_id: str, location: str) -> Path:
        return self.inner.volume_path(volume_id, location)

    def snapshot_path(self, snapshot_id: str, location: str) -> Path:
        return self.inner.snapshot_path(snapshot_id, location)

    def pools(self) -> list[PoolStats]:
        return self.inner.pools()

    async def _copying(
        self, operation: str, volume_id: str, step_key: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        """Apply the plan to a copying step, then make the call; with ``corrupt`` armed,
        flip a byte of each fresh copy the driver makes before it verifies it."""
        if not await self._apply(operation, volume_id, step_key):
            return await call()
        flipped: list[int] = []

        def corrupt(copy: Path) -> None:  # runs in the driver's worker thread
            flipped.append(copying.flip_byte(copy))

        token = before_verify.set(corrupt)
        try:
            return await call()
        finally:
            before_verify.reset(token)
            if flipped:
                self.injected.append(DriverCall(operation, volume_id, step_key))
                extra = {"volume_id": volume_id, "action": operation, "step_key": step_key}
                log.info(
                    "flipped byte %d of the %s copy of volume %s",
                    flipped[0],
                    operation,
                    volume_id,
                    extra=extra,
                )

    async def _apply(self, operation: str, volume_id: str, step_key: str) -> bool:
        """Record the call, then delay it, fail it, or let it through; True when it
        goes through with a ``corrupt`` fault armed."""
        call = DriverCall(operation, volume_id, step_key)
        self.calls.append(call)
        fault = self.plan.fault_for(operation)
        if fault is None:
            return False
        if fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            return False
        if fault.times is not None:
            if self._hits.get(operation, 0) >= fault.times:
                return False
            self._hits[operation] = self._hits.get(operation, 0) + 1
        if fault.kind == "corrupt":
            return True
        self.injected.append(call)
        extra = {"volume_id": volume_id, "action": operation, "step_key": step_key}
        log.info("injecting %s into %s of volume %s", fault, operation, volume_id, extra=extra)
        if fault.kind == "capacity":
            raise CapacityError(operation, volume_id, "injected capacity shortage")
        raise BackendError(operation, volume_id, INJECTED_REASON)
