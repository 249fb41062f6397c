"""The file driver's exports: one small JSON record per export of a volume to a connector,
``<root>/<host>@<backend>/.exports/volume-<id>/<export_id>.json``, written crash-safe (temp
file, fsync, rename, fsync of the directory). Blocking: the driver runs these in threads.

The record is the export: a host may open the volume while it exists, and removing it is
``terminate_connection``. ``.exports`` cannot be a pool's name (pool names start with a
letter or digit), so it never mixes with images.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cinderblock.drivers.imagefiles import fsync_dir

EXPORTS_DIR = ".exports"
RECORD_SUFFIX = ".json"
_TEMP_PREFIX = ".tmp-"


def volume_dir(backend_dir: Path, volume_id: str) -> Path:
    """Where the exports of one volume live, under its backend's directory."""
    return backend_dir / EXPORTS_DIR / f"volume-{volume_id}"


def record_path(directory: Path, export_id: str) -> Path:
    return directory / f"{export_id}{RECORD_SUFFIX}"


def read_all(directory: Path) -> list[dict[str, Any]]:
    """Every export record of a volume, by export id (none: the directory is missing).
    Temp files a crash left behind are not exports and are removed."""
    records: list[dict[str, Any]] = []
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return records
    for entry in entries:
        if entry.name.startswith(_TEMP_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
            continue
        if not entry.name.endswith(RECORD_SUFFIX):
            continue
        with contextlib.suppress(FileNotFoundError):
            records.append(json.loads(Path(entry.path).read_text()))
    return records


def read(directory: Path, export_id: str) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = json.loads(record_path(directory, export_id).read_text())
    except FileNotFoundError:
        return None
    return record


def write(directory: Path, record: dict[str, Any]) -> None:
    """Write (or replace) the record of ``record["export_id"]`` atomically and durably."""
    directory.mkdir(parents=True, exist_ok=True)
    path = record_path(directory, str(record["export_id"]))
    temp = directory / f"{_TEMP_PREFIX}{secrets.token_hex(4)}"
    try:
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(record, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_dir(directory)


def remove(directory: Path, export_id: str) -> bool:
    """Remove one export record; True if it existed. The volume's directory goes with its
    last export."""
    try:
        os.unlink(record_path(directory, export_id))
    except FileNotFoundError:
        return False
    fsync_dir(directory)
    with contextlib.suppress(OSError):  # not empty (another export), or already gone
        directory.rmdir()
    return True
