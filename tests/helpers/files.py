"""Bytes in volume files, for tests that look inside the file driver's images."""

from __future__ import annotations

from pathlib import Path


def write_at(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def read_at(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(size)


def write_marks(path: Path, marks: dict[int, bytes]) -> None:
    with path.open("r+b") as f:
        for offset, data in marks.items():
            f.seek(offset)
            f.write(data)


def read_marks(path: Path, marks: dict[int, bytes]) -> dict[int, bytes]:
    with path.open("rb") as f:
        found = {}
        for offset, data in marks.items():
            f.seek(offset)
            found[offset] = f.read(len(data))
        return found
