"""Blocking, sparse-aware copy and content digest of volume image files (run them in a
thread).

Holes stay holes: only the data extents of the source (found with ``SEEK_DATA`` /
``SEEK_HOLE``) are read, and chunks of them that are all zeros are not written. Where
the platform or file system cannot report extents, the whole file is read in chunks and
the all-zero ones are skipped, which keeps the copy sparse all the same. The digest
(`content_digest`) reads only the data extents too, yet depends on the bytes alone, not
on the layout of the holes.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from cinderblock.sparse.extents import data_extents, is_zero, read_exactly

CHUNK = 2**20
"""Bytes read, written or hashed at a time; also the chunk size of `content_digest`
(changing it changes every digest)."""

_ZEROS = bytes(CHUNK)


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
                    chunk = read_exactly(src, min(CHUNK, end - offset), offset)
                    if not is_zero(chunk):
                        _write_all(dst, chunk, offset)
                        written += len(chunk)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return written


def content_digest(path: Path) -> str:
    """Hex content digest of the file's whole apparent size, read sparsely.

    The digest is the sha256 of the sequence of the sha256 digests of the file's
    ``CHUNK``-byte chunks (the last one shorter when the size is not a multiple of
    ``CHUNK``; an empty file has no chunks). It depends on the bytes the file reads as,
    never on where its holes are: a chunk read as all zeros has the digest of that many
    zero bytes, whether it lies in a hole (never read: the precomputed constant is used)
    or in a data extent (read, and found to be zeros). Every chunk touching a data extent
    is read, so a changed byte anywhere changes the digest. Without ``SEEK_DATA`` support
    every chunk is read. Costs the data extents' size, not the apparent size.

    Raises:
        OSError: the file cannot be opened or read (or ended while it was read).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return _chunked_digest(fd, size)
    finally:
        os.close(fd)


def _chunked_digest(fd: int, size: int) -> str:
    outer = hashlib.sha256()
    chunks = -(-size // CHUNK)  # the last one may be short
    done = 0  # chunks already in ``outer``
    for start, end in data_extents(fd, size):
        first, stop = max(start // CHUNK, done), -(-end // CHUNK)
        _zero_chunks(outer.update, done, first, size)
        for index in range(first, stop):
            offset = index * CHUNK
            chunk = read_exactly(fd, min(CHUNK, size - offset), offset)
            outer.update(_zero_digest(len(chunk)) if is_zero(chunk) else _sha256(chunk))
        done = max(done, stop)
    _zero_chunks(outer.update, done, chunks, size)
    return outer.hexdigest()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@functools.cache
def _zero_digest(length: int) -> bytes:
    """sha256 of ``length`` zero bytes: the digest of a chunk that reads as zeros."""
    return _sha256(bytes(length))


_ZERO_DIGEST = _zero_digest(CHUNK)
_ZERO_RUN = 4_096
"""Chunk digests of zeros fed to the outer hash at a time (128 KiB)."""


def _zero_chunks(update: Callable[[bytes], object], first: int, stop: int, size: int) -> None:
    """Feed ``update`` the digests of chunks ``[first, stop)``, all zeros, of a ``size``-byte
    file (the last chunk of the file may be short)."""
    full = min(stop, size // CHUNK)  # chunks before it are CHUNK bytes long
    count = full - first
    while count > 0:
        run = min(count, _ZERO_RUN)
        update(_ZERO_DIGEST * run)
        count -= run
    for index in range(max(first, full), stop):
        update(_zero_digest(size - index * CHUNK))


def flip_byte(path: Path) -> int:
    """Invert one byte of the file: the first byte of its first data extent (offset 0
    when it has none). Returns the offset. For fault injection: simulates a copy that
    went bad on the way to the disk.

    The byte always lands where `content_digest` reads: inside a data extent, or, in a
    file of holes, as a nonzero byte that makes a data extent of its own."""
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
