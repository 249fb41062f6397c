"""The file driver's connections: exports of a volume's image to connectors, recorded one
per export (``exports``), under a lock per volume that is not its data lock (a migration or
snapshot holding that one does not hold an attach up). Async, on the driver's locks; the
file I/O runs in threads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cinderblock.drivers import exports, imagefiles
from cinderblock.drivers.base import (
    BackendError,
    ExportConflictError,
    ExportSpec,
    PoolConfig,
    check_export_id,
    check_volume_id,
)
from cinderblock.drivers.ledger import KeyedLocks

log = logging.getLogger("cinderblock.drivers.file")


class Connections:
    """Exports of the file driver's volumes (see ``FileDriver.initialize_connection``).

    Args:
        root: the driver's root (connection info names the image under it).
        locks: the driver's per-key locks (``exports:<volume id>`` is taken here).
        pool_of: the driver's ``(operation, volume_id, location) -> PoolConfig`` lookup,
            raising BackendError for an unknown location.
        pool_dir: where a pool's images live; its parent is the backend's directory.
    """

    def __init__(
        self,
        root: Path,
        locks: KeyedLocks,
        pool_of: Callable[[str, str, str], PoolConfig],
        pool_dir: Callable[[PoolConfig], Path],
    ) -> None:
        self._root = root
        self._locks = locks
        self._pool_of = pool_of
        self._pool_dir = pool_dir

    def directory(self, operation: str, volume_id: str, location: str) -> Path:
        check_volume_id(volume_id)
        pool = self._pool_of(operation, volume_id, location)
        return exports.volume_dir(self._pool_dir(pool).parent, volume_id)

    def records(self, volume_id: str, location: str) -> list[dict[str, Any]]:
        return exports.read_all(self.directory("exports", volume_id, location))

    async def export(
        self, volume_id: str, location: str, spec: ExportSpec, *, step_key: str
    ) -> dict[str, Any]:
        """Under the volume's export lock: the image must exist; a volume that is not
        multiattach exported to another connector (for another server) is refused; an
        export already recorded under ``spec.export_id`` for the same connector and mode is
        answered from its record (never written twice)."""
        check_export_id(spec.export_id)
        directory = self.directory("attach", volume_id, location)
        pool = self._pool_of("attach", volume_id, location)
        path = self._pool_dir(pool) / imagefiles.image_name(volume_id)
        ctx = {
            "volume_id": volume_id,
            "action": "attach",
            "step_key": step_key,
            "location": location,
        }
        info = local_connection_info(
            self._root,
            location,
            volume_id,
            access_mode=spec.access_mode,
            connector=spec.connector,
            encrypted=spec.encrypted,
        )
        record = {
            "volume_id": volume_id,
            "export_id": spec.export_id,
            "location": location,
            "connector": dict(spec.connector)
            if isinstance(spec.connector, Mapping)
            else spec.connector,
            "identity": spec.identity,
            "instance_uuid": spec.instance_uuid,
            "access_mode": spec.access_mode,
            "multiattach": spec.multiattach,
            "connection_info": info,
            "step_key": step_key,
        }
        async with self._locks.hold(f"exports:{volume_id}"):
            try:
                if await asyncio.to_thread(imagefiles.apparent_size, path) is None:
                    raise BackendError("attach", volume_id, f"volume file {path} not found")
                current = await asyncio.to_thread(exports.read_all, directory)
                same = next((r for r in current if r["export_id"] == spec.export_id), None)
                if same is not None and _same_export(same, record):
                    log.info(
                        "volume %s is already exported as %s", volume_id, spec.export_id, extra=ctx
                    )
                    return dict(same["connection_info"])
                if not spec.multiattach:
                    _refuse_second_export(volume_id, spec, current)
                await asyncio.to_thread(exports.write, directory, record)
            except OSError as err:
                raise BackendError("attach", volume_id, f"cannot write the export: {err}") from err
        log.info(
            "exported volume %s as %s to %s", volume_id, spec.export_id, spec.identity, extra=ctx
        )
        return info

    async def remove(self, volume_id: str, location: str, export_id: str, *, step_key: str) -> bool:
        """Remove one export record; True if it was there (gone already: False)."""
        check_export_id(export_id)
        directory = self.directory("detach", volume_id, location)
        ctx = {
            "volume_id": volume_id,
            "action": "detach",
            "step_key": step_key,
            "location": location,
        }
        async with self._locks.hold(f"exports:{volume_id}"):
            try:
                removed = await asyncio.to_thread(exports.remove, directory, export_id)
            except OSError as err:
                raise BackendError("detach", volume_id, f"cannot remove the export: {err}") from err
        log.info(
            "%s export %s of volume %s",
            "removed" if removed else "no",
            export_id,
            volume_id,
            extra=ctx,
        )
        return removed

    async def drop_all(self, operation: str, volume_id: str, location: str) -> None:
        """Remove the exports of the volume's image at ``location`` (Cinder's remove_export
        before a delete or an unmanage): no host keeps a way to an image that is gone. The
        exports of a copy at another location (a migration's other end) stay."""
        directory = self.directory(operation, volume_id, location)
        async with self._locks.hold(f"exports:{volume_id}"):
            try:
                for record in await asyncio.to_thread(exports.read_all, directory):
                    if record.get("location") == location:
                        export_id = str(record["export_id"])
                        await asyncio.to_thread(exports.remove, directory, export_id)
            except OSError as err:
                raise BackendError(operation, volume_id, f"cannot remove exports: {err}") from err


def _same_export(recorded: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """A redelivered export: same connector, mode and place, so the same connection."""
    keys = ("connector", "access_mode", "location", "connection_info")
    return all(recorded.get(k) == wanted[k] for k in keys)


def _refuse_second_export(volume_id: str, spec: ExportSpec, current: list[dict[str, Any]]) -> None:
    """A volume that is not multiattach is exported to one connector at a time; a second
    host is allowed for the same server only (a live migration holds both)."""
    for other in current:
        if other["export_id"] == spec.export_id or other.get("identity") == spec.identity:
            continue
        if spec.instance_uuid is not None and other.get("instance_uuid") == spec.instance_uuid:
            continue
        reason = (
            f"volume is not multiattach and is already exported to {other.get('identity')} "
            f"({other['export_id']})"
        )
        raise ExportConflictError("attach", volume_id, reason)


def local_connection_info(
    root: Path,
    location: str,
    volume_id: str,
    *,
    access_mode: str,
    connector: object,
    encrypted: bool = False,
) -> dict[str, object]:
    """What os-initialize_connection returns for a file-backed volume: a local path
    connector (os-brick's ``local`` type). Pure: it names the file, it does not open it."""
    host_backend, _, pool = location.partition("#")
    path = root / host_backend / pool / imagefiles.image_name(volume_id)
    multipath = (
        bool(connector.get("enforce_multipath", False)) if isinstance(connector, dict) else False
    )
    data: dict[str, object] = {
        "device_path": str(path),
        "access_mode": access_mode,
        "qos_specs": None,
        "encrypted": encrypted,
        "discard": True,
        "enforce_multipath": multipath,
    }
    return {"driver_volume_type": "local", "data": data, "enforce_multipath": multipath}
