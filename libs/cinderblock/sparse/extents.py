"""Reading sparse files: which byte ranges may hold data (``SEEK_DATA``/``SEEK_HOLE``), and
reading them exactly. Shared by the drivers and the image adapters; stdlib only."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

CHUNK = 2**20
"""Bytes read, written, hashed or sent at a time."""

_ZEROS = bytes(CHUNK)
_SEEK_DATA: int | None = getattr(os, "SEEK_DATA", None)
_SEEK_HOLE: int | None = getattr(os, "SEEK_HOLE", None)
_NO_EXTENTS = {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The ``[start, end)`` ranges of the first `size` bytes of `fd` that may hold
    data, in order; the gaps between them are holes."""
    if _SEEK_DATA is None or _SEEK_HOLE is None:
        if size:
            yield 0, size
        return
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, _SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # only a hole from offset on
                return
            if offset == 0 and err.errno in _NO_EXTENTS:
                yield 0, size
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, _SEEK_HOLE), size)
        yield start, end
        offset = end


def read_exactly(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    while len(data) < length:
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            raise OSError(errno.EIO, f"file ended at byte {offset + len(data)} while reading")
        data += more
    return data


def is_zero(chunk: bytes) -> bool:
    """True when every byte of `chunk` is zero."""
    return chunk == _ZEROS if len(chunk) == CHUNK else not any(chunk)
