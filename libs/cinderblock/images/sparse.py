"""Blocking, sparse-aware reading of image sources (run these in a thread).

A volume file is mostly holes. Only its data extents (``SEEK_DATA`` / ``SEEK_HOLE``) are
read from disk; holes are handed out as zeros without reading them. Where the file
system cannot report extents the whole file is read. (A small sibling of
`cinderblock.drivers.copying`, which this package may not import.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from cinderblock.sparse.extents import CHUNK, data_extents, is_zero, read_exactly

__all__ = ["CHUNK", "SourceTooSmallError", "data_extents", "is_zero", "read_exactly"]

_ZEROS = bytes(CHUNK)


class SourceTooSmallError(ValueError):
    """Raised when a source file has fewer bytes than the size asked for."""


def _zeros(count: int) -> Iterator[bytes]:
    while count > 0:
        step = min(count, CHUNK)
        yield _ZEROS if step == CHUNK else bytes(step)
        count -= step


def open_source(path: Path, size: int) -> int:
    """Open `path` for reading; the caller closes the descriptor.

    Raises:
        FileNotFoundError: there is no such file.
        SourceTooSmallError: the file has fewer than `size` bytes.
    """
    if size < 0:
        raise ValueError(f"size must not be negative, got {size}")
    fd = os.open(path, os.O_RDONLY)
    apparent = os.fstat(fd).st_size
    if apparent < size:
        os.close(fd)
        raise SourceTooSmallError(f"{path} has {apparent} bytes, fewer than {size}")
    return fd


def chunks(fd: int, size: int) -> Iterator[tuple[int, bytes, bool]]:
    """``(offset, chunk, is_hole)`` for the first `size` bytes of `fd`, in order, each
    chunk at most CHUNK bytes. Hole chunks are zeros that were never read."""
    done = 0
    for start, end in data_extents(fd, size):
        for zeros in _zeros(start - done):
            yield done, zeros, True
            done += len(zeros)
        for offset in range(start, end, CHUNK):
            yield offset, read_exactly(fd, min(CHUNK, end - offset), offset), False
        done = end
    for zeros in _zeros(size - done):
        yield done, zeros, True
        done += len(zeros)


def digests(path: Path, size: int, algorithms: Iterable[str]) -> dict[str, str]:
    """Hex digests of the first `size` bytes of `path`, one per hashlib algorithm."""
    hashers = {name: new_hash(name) for name in algorithms}
    fd = open_source(path, size)
    try:
        for _, chunk, _ in chunks(fd, size):
            for hasher in hashers.values():
                hasher.update(chunk)
    finally:
        os.close(fd)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def new_hash(name: str) -> hashlib._Hash:
    """A hashlib object; md5 is asked for as a checksum, not for security (FIPS)."""
    return hashlib.new(name, usedforsecurity=False)


def write_all(fd: int, data: bytes, offset: int) -> None:
    """``pwrite`` every byte of `data` at `offset`."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class TooLargeError(ValueError):
    """Raised when an image has more bytes than the file it is written into can take."""


class SparseWriter:
    """Writes a stream of bytes into an open file from ``start`` on, skipping all-zero
    pieces (the file keeps its holes) and hashing every byte (sha256 and md5); refuses
    more than ``limit`` bytes. Blocking: call it from a worker thread."""

    def __init__(self, fd: int, start: int, limit: int) -> None:
        self._fd = fd
        self._start = start
        self._limit = limit
        self.written = 0
        self._hashers = {name: new_hash(name) for name in ("sha256", "md5")}

    def write(self, data: bytes) -> None:
        if self.written + len(data) > self._limit:
            raise TooLargeError(f"the image has more than the {self._limit} bytes that fit")
        for hasher in self._hashers.values():
            hasher.update(data)
        if not is_zero(data):
            write_all(self._fd, data, self._start + self.written)
        self.written += len(data)

    def hexdigests(self) -> dict[str, str]:
        return {name: hasher.hexdigest() for name, hasher in self._hashers.items()}
