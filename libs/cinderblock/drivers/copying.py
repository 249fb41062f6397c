"""Blocking, sparse-aware copy and checksum of volume image files (run them in a thread).

Holes stay holes: only the data extents of the source (found with ``SEEK_DATA`` /
``SEEK_HOLE``) are read, and chunks of them that are all zeros are not written. Where
the platform or file system cannot report extents, the whole file is read in chunks and
the all-zero ones are skipped, which keeps the copy sparse all the same.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

CHUNK = 2**20
"""Bytes read, written or hashed at a time."""

_ZEROS = bytes(CHUNK)
_ZERO_VIEW = memoryview(_ZEROS)

SEEK_DATA: int | None = getattr(os, "SEEK_DATA", None)
SEEK_HOLE: int | None = getattr(os, "SEEK_HOLE", None)
_NO_EXTENTS = {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The ``[start, end)`` ranges of the first ``size`` bytes of ``fd`` that may hold
    data, in order; the gaps between them are holes and read as zeros.

    Without ``SEEK_DATA`` / ``SEEK_HOLE`` support the whole file is one range.
    """
    if SEEK_DATA is None or SEEK_HOLE is None:
        if size:
            yield 0, size
        return
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # nothing but a hole from offset to the end
                return
            if offset == 0 and err.errno in _NO_EXTENTS:  # the file system cannot tell
                yield 0, size
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, SEEK_HOLE), size)
        yield start, end
        offset = end


def _read_exactly(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    while len(data) < length:
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            raise OSError(errno.EIO, f"file ended at byte {offset + len(data)} while reading")
        data += more
    return data


def _is_zero(chunk: bytes) -> bool:
    return chunk == _ZEROS if len(chunk) == CHUNK else chunk == bytes(len(chunk))


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def copy_sparse(source: Path, target: Path) -> int:
    """Copy ``source`` into the new file ``target`` (never an existing one), keeping
    holes, then fsync it. Returns the number of data bytes written.

    The target gets the source's apparent size first (``ftruncate``, no blocks); then
    every chunk of the source's data extents that is not all zeros is written at its
    offset, so the rest of the target stays a hole.

    Raises:
        FileExistsError: ``target`` exists.
        OSError: reading, writing or syncing failed.
    """
    src = os.open(source, os.O_RDONLY)
    try:
        size = os.fstat(src).st_size
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.truncate(dst, size)
            written = 0
            for start, end in data_extents(src, size):
                for offset in range(start, end, CHUNK):
                    chunk = _read_exactly(src, min(CHUNK, end - offset), offset)
                    if not _is_zero(chunk):
                        _write_all(dst, chunk, offset)
                        written += len(chunk)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return written


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file's whole apparent size, holes hashed as the zeros they read
    as (without reading them from disk)."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        hashed = 0
        for start, end in data_extents(fd, size):
            for zeros in _zeros(start - hashed):
                digest.update(zeros)
            for offset in range(start, end, CHUNK):
                digest.update(_read_exactly(fd, min(CHUNK, end - offset), offset))
            hashed = end
        for zeros in _zeros(size - hashed):
            digest.update(zeros)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _zeros(count: int) -> Iterator[memoryview]:
    """``count`` zero bytes, as views of at most CHUNK bytes."""
    while count > 0:
        step = min(count, CHUNK)
        yield _ZERO_VIEW[:step]
        count -= step


def flip_byte(path: Path) -> int:
    """Invert one byte of the file: the first byte of its first data extent (offset 0
    when it has none). Returns the offset. For fault injection: simulates a copy that
    went bad on the way to the disk."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        offset = next((start for start, _ in data_extents(fd, size)), 0)
        old = os.pread(fd, 1, offset) or b"\0"
        os.pwrite(fd, bytes([old[0] ^ 0xFF]), offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return offset
