"""Blocking, crash-safe operations on sparse volume and snapshot image files (run them in
a thread)."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

IMAGE_PREFIX = "volume-"
SNAPSHOT_PREFIX = "snapshot-"
IMAGE_SUFFIX = ".img"
TEMP_SUFFIX = ".tmp"


def image_name(volume_id: str) -> str:
    """File name of a volume's image inside its pool directory."""
    return f"{IMAGE_PREFIX}{volume_id}{IMAGE_SUFFIX}"


def snapshot_name(snapshot_id: str) -> str:
    """File name of a snapshot's image inside its pool directory (never a volume's name)."""
    return f"{SNAPSHOT_PREFIX}{snapshot_id}{IMAGE_SUFFIX}"


def temp_path(path: Path) -> Path:
    """A fresh temp name next to ``path``; a driver removes leftovers of it at start."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _is_image(name: str) -> bool:
    """A volume's or a snapshot's image: both take space in their pool."""
    return name.startswith((IMAGE_PREFIX, SNAPSHOT_PREFIX)) and name.endswith(IMAGE_SUFFIX)


def _is_leftover_temp(name: str) -> bool:
    return name.startswith((f".{IMAGE_PREFIX}", f".{SNAPSHOT_PREFIX}")) and name.endswith(
        TEMP_SUFFIX
    )


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (a new or removed name) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def scan_pool(directory: Path) -> int:
    """Create the pool directory if needed, drop temp files a crash left, and
    return the sum of the apparent sizes of its volume and snapshot images in bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    allocated = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if _is_leftover_temp(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            elif _is_image(entry.name) and entry.is_file(follow_symlinks=False):
                allocated += entry.stat(follow_symlinks=False).st_size
    return allocated


def apparent_size(path: Path) -> int | None:
    """Apparent size of a regular file in bytes, or None when there is none."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise IsADirectoryError(f"{path} is not a regular file")
    return info.st_size


def create_sparse(path: Path, size_bytes: int) -> None:
    """Create ``path`` as a sparse file of ``size_bytes`` without writing any data.

    The file is built under a temp name and hard-linked into place, so a crash
    leaves either no volume or a complete one, and an existing file is never
    overwritten (FileExistsError instead).
    """
    temp = temp_path(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            os.truncate(fd, size_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    fsync_dir(path.parent)


def grow(path: Path, size_bytes: int) -> None:
    """Set the apparent size of an existing file to ``size_bytes``, keeping its data.

    Raises FileNotFoundError when the file is missing (it is never created here).
    """
    fd = os.open(path, os.O_WRONLY)
    try:
        os.truncate(fd, size_bytes)
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> int | None:
    """Unlink ``path``; return the apparent size it had, or None if it was already gone."""
    size = apparent_size(path)
    if size is None:
        return None
    try:
        os.unlink(path)
    except FileNotFoundError:
        return None
    fsync_dir(path.parent)
    return size


def install(temp: Path, path: Path) -> None:
    """Give the complete, synced file ``temp`` the name ``path``, replacing any file
    there atomically, and make the new name durable."""
    os.replace(temp, path)
    fsync_dir(path.parent)


def discard(path: Path) -> None:
    """Unlink ``path`` if it exists (a temp file that will never be installed)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
