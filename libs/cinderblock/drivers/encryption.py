"""The encryption header model of the file driver (blocking helpers; run them in a thread).

An encrypted volume's image starts with a header, as a LUKS volume does: the bytes a guest
can use (the payload) are the image's size minus the header. No byte is really encrypted
(there is no key manager); what is modelled is the space the header takes, because that is
what makes an unencrypted → encrypted retype at the same size impossible.

Header sizes (``header_bytes``), as cryptsetup lays them out:

* ``luks`` (LUKS1, Cinder's default provider, also the legacy ``LuksEncryptor`` class
  names): **2 MiB**: LUKS1 puts the payload at 4096 sectors of 512 bytes with a 512-bit
  key (aes-xts-plain64 with key_size 256 per half), the usual layout.
* ``luks2``: **16 MiB**, cryptsetup's default LUKS2 header (metadata and keyslots area).
* ``plain`` (dm-crypt plain mode, legacy ``CryptsetupEncryptor``): **0**: no header.
* any other provider: 2 MiB, as LUKS1.

The first bytes of the header hold ``MAGIC`` and a small JSON record (provider, cipher, key
size, key id, header size), the rest of the header is a hole. A retype into another
encryption copies the source's payload behind the target's header. The target has the
source's size, so its payload is shorter (or longer) by the difference of the headers; the
copy fits when the source's data (up to its last non-zero byte, `data_end`) lies within the
target's usable bytes, so only never-written zeros at the very end can be left out. A guest
that used its whole volume (a file system spans it, with metadata at its end) does not fit
behind a bigger header: extend the volume first (by 1 GiB: its size plus the header,
rounded up to whole GiB), then retype.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cinderblock.drivers.errors import GIB, DriverError
from cinderblock.sparse.extents import CHUNK, data_extents, is_zero, read_exactly

MIB = 2**20
LUKS1_HEADER = 2 * MIB
LUKS2_HEADER = 16 * MIB
MAGIC = b"CBCRYPT1"
"""First bytes of a modelled encryption header (not LUKS's magic: nothing is encrypted)."""
_RECORD_MAX = 4096


class NoRoomForDataError(DriverError):
    """Raised when a volume's data cannot fit in the usable bytes of its re-encrypted copy
    (the header takes room). Nothing was written; extending the volume first helps."""


def header_bytes(provider: str | None) -> int:
    """Bytes the header of ``provider`` takes at the start of the image."""
    name = (provider or "").strip().lower()
    if name == "plain" or "cryptsetup" in name:
        return 0
    if "luks2" in name:
        return LUKS2_HEADER
    return LUKS1_HEADER


def usable_bytes(size_bytes: int, header: int) -> int:
    """The payload a guest can use in an image of ``size_bytes`` with a ``header``."""
    return max(size_bytes - header, 0)


def fits(data_end: int, target_size: int, target_header: int) -> bool:
    """Whether a payload whose last non-zero byte ends at ``data_end`` (bytes from the
    payload's start) fits in the usable bytes of the target image."""
    return data_end <= usable_bytes(target_size, target_header)


def size_needed_gb(data_end: int, target_header: int) -> int:
    """The smallest whole GiB size of an image that holds a payload ending at ``data_end``
    behind ``target_header`` (what to extend the volume to before the retype)."""
    return -(-(data_end + target_header) // GIB)


@dataclass(frozen=True)
class EncryptionHeader:
    """The header a new encrypted image gets."""

    provider: str
    cipher: str | None
    key_size: int | None
    key_id: str

    @property
    def size(self) -> int:
        return header_bytes(self.provider)

    def encode(self) -> bytes:
        """``MAGIC``, a 4-byte length, then the JSON record (empty for a 0-byte header)."""
        if self.size == 0:
            return b""
        record = json.dumps(
            {
                "provider": self.provider,
                "cipher": self.cipher,
                "key_size": self.key_size,
                "key_id": self.key_id,
                "header_bytes": self.size,
            },
            sort_keys=True,
        ).encode()
        return MAGIC + len(record).to_bytes(4, "big") + record


def read_header(fd: int) -> dict[str, object] | None:
    """The header record at the start of an image, or None when it has none."""
    start = os.pread(fd, len(MAGIC) + 4, 0)
    if len(start) < len(MAGIC) + 4 or not start.startswith(MAGIC):
        return None
    length = int.from_bytes(start[len(MAGIC) :], "big")
    if length > _RECORD_MAX:
        return None
    try:
        record = json.loads(os.pread(fd, length, len(MAGIC) + 4))
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def header_of(path: Path) -> dict[str, object] | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_header(fd)
    finally:
        os.close(fd)


def header_size_of(record: dict[str, object] | None) -> int:
    if record is None:
        return 0
    size = record.get("header_bytes")
    return size if isinstance(size, int) and size >= 0 else LUKS1_HEADER


def write_header(path: Path, header: EncryptionHeader) -> None:
    """Write the header record at the start of an existing image and fsync it."""
    blob = header.encode()
    if not blob:
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, blob, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def data_end(path: Path) -> int:
    """Where the payload's data ends: the offset (from the payload's start) just past its
    last non-zero byte; 0 for a payload of zeros."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        start = header_size_of(read_header(fd))
        end = 0
        for offset, chunk in _payload_chunks(fd, start, size):
            end = max(end, offset + len(chunk.rstrip(b"\0")))
        return end
    finally:
        os.close(fd)


def copy_payload(source: Path, target: Path, header: EncryptionHeader | None) -> int:
    """Build the new image ``target`` (never an existing file): the source's size, the
    given header (none for an unencrypted image), then the source's payload right behind
    it, sparse, fsynced; the payload's zeros beyond the target's usable bytes are left out.
    Returns the data bytes written.

    Raises:
        ValueError: the data does not fit (callers check `fits` first).
        OSError: reading, writing or syncing failed.
    """
    src = os.open(source, os.O_RDONLY)
    try:
        size = os.fstat(src).st_size
        src_start = header_size_of(read_header(src))
        dst_start = header.size if header is not None else 0
        capacity = usable_bytes(size, dst_start)
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.truncate(dst, size)
            written = 0
            if header is not None and header.encode():
                os.pwrite(dst, header.encode(), 0)
            for offset, chunk in _payload_chunks(src, src_start, size):
                data = chunk[: max(capacity - offset, 0)]
                if data.rstrip(b"\0") != chunk.rstrip(b"\0"):
                    raise ValueError("the data does not fit behind the header")
                at = dst_start + offset
                view = memoryview(data)
                while view:
                    n = os.pwrite(dst, view, at)
                    view, at = view[n:], at + n
                written += len(data)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return written


def payload_digest(path: Path) -> str:
    """sha256 over the payload's non-zero chunks, each with its offset in the payload and
    without its trailing zeros: equal for payloads with equal bytes, whatever the header,
    the holes and the zeros after the data (the payloads' lengths may differ)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        start = header_size_of(read_header(fd))
        digest = hashlib.sha256()
        for offset, chunk in _payload_chunks(fd, start, size):
            digest.update(offset.to_bytes(8, "big") + hashlib.sha256(chunk.rstrip(b"\0")).digest())
        return digest.hexdigest()
    finally:
        os.close(fd)


def _payload_chunks(fd: int, start: int, size: int) -> Iterator[tuple[int, bytes]]:
    """(offset in the payload, bytes) of each non-zero ``CHUNK`` of the payload
    ``[start, size)`` that touches a data extent; chunks are cut from the payload's start."""
    done = 0
    for ext_start, ext_end in data_extents(fd, size):
        if ext_end <= start:
            continue
        first = max((max(ext_start, start) - start) // CHUNK, done)
        stop = -(-(ext_end - start) // CHUNK)
        for index in range(first, stop):
            offset = index * CHUNK
            chunk = read_exactly(fd, min(CHUNK, size - start - offset), start + offset)
            if not is_zero(chunk):
                yield offset, chunk
        done = max(done, stop)
