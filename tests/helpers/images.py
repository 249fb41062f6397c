"""Sparse source files for the image tests: a few data extents in a sea of holes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MIB = 2**20


@dataclass(frozen=True)
class Source:
    path: Path
    size: int
    extents: tuple[tuple[int, bytes], ...]

    def content(self) -> bytes:
        """The whole file as it reads (small files only)."""
        return self.path.read_bytes()


def sparse_source(
    path: Path,
    *,
    size: int = 8 * MIB,
    extents: tuple[tuple[int, bytes], ...] | None = None,
) -> Source:
    """A sparse file of apparent `size` bytes with data written only at `extents`.

    The default has a small extent at 0, a random MiB at 3 MiB, a MiB of written zeros
    at 5 MiB (allocated, yet all zero) and a few bytes near the end.
    """
    if extents is None:
        extents = (
            (0, b"boot" * 1024),
            (3 * MIB, os.urandom(MIB)),
            (5 * MIB, bytes(MIB)),
            (size - 100, b"tail-bytes"),
        )
    with path.open("wb") as file:
        file.truncate(size)
        for offset, data in extents:
            file.seek(offset)
            file.write(data)
        file.flush()
        os.fsync(file.fileno())
    return Source(path, size, extents)


def allocated(path: Path) -> int:
    """Bytes of disk the file really uses."""
    return path.stat().st_blocks * 512
