"""The blocking sparse copy and checksum helpers, on small files."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from cinderblock.drivers import copying
from cinderblock.sparse import extents
from tests.unit.drivers.given import MIB, allocated_bytes, pattern, read_at, write_at, zeros_then

SIZE = 16 * MIB
DATA = {0: 4_096, 5_000: 100, 3 * MIB + 7: MIB, 10 * MIB: 2 * MIB + 3}


def sparse_file(path: Path, data: dict[int, int], size: int = SIZE) -> Path:
    path.write_bytes(b"")
    os.truncate(path, size)
    write_at(path, data)
    return path


def plain_sha256(path: Path) -> str:
    """sha256 of every byte the file reads as, without any hole handling."""
    digest = hashlib.sha256()
    with path.open("rb") as image:
        while block := image.read(MIB):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def no_extents(monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform without SEEK_DATA / SEEK_HOLE."""
    monkeypatch.setattr(extents, "_SEEK_DATA", None)


def test_extents_cover_the_data_and_skip_the_holes(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "image", {4 * MIB: 100, 12 * MIB: MIB})

    with path.open("rb") as image:
        extents = list(copying.data_extents(image.fileno(), SIZE))

    assert len(extents) == 2
    assert extents[0][0] <= 4 * MIB < 4 * MIB + 100 <= extents[0][1] < 12 * MIB
    assert extents[1][0] <= 12 * MIB < 13 * MIB <= extents[1][1] <= SIZE


@pytest.mark.parametrize("size", [0, SIZE])
def test_a_file_of_holes_has_no_extents(tmp_path: Path, size: int) -> None:
    path = sparse_file(tmp_path / "image", {}, size)

    with path.open("rb") as image:
        assert list(copying.data_extents(image.fileno(), size)) == []


@pytest.mark.usefixtures("no_extents")
def test_without_seek_data_the_whole_file_is_one_extent(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "image", {})

    with path.open("rb") as image:
        assert list(copying.data_extents(image.fileno(), SIZE)) == [(0, SIZE)]


def test_a_file_system_refusing_seek_data_gives_one_extent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sparse_file(tmp_path / "image", DATA)
    real_lseek = os.lseek

    def lseek(fd: int, offset: int, whence: int) -> int:
        if whence == os.SEEK_DATA:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_lseek(fd, offset, whence)

    monkeypatch.setattr(os, "lseek", lseek)
    with path.open("rb") as image:
        assert list(copying.data_extents(image.fileno(), SIZE)) == [(0, SIZE)]
    copying.copy_sparse(path, tmp_path / "copy")

    assert plain_sha256(tmp_path / "copy") == plain_sha256(path)
    assert allocated_bytes(tmp_path / "copy") < 8 * MIB


def chunked_sha256(pieces: Iterable[bytes]) -> str:
    """The digest by its definition, from the bytes the file reads as: sha256 over the
    sha256 of each 1 MiB chunk (the last one shorter), nothing sparse about it."""
    outer, pending = hashlib.sha256(), bytearray()
    for piece in pieces:
        view = memoryview(piece)
        while view:
            if not pending and len(view) >= MIB:
                outer.update(hashlib.sha256(view[:MIB]).digest())
                view = view[MIB:]
                continue
            take = min(MIB - len(pending), len(view))
            pending += view[:take]
            view = view[take:]
            if len(pending) == MIB:
                outer.update(hashlib.sha256(pending).digest())
                pending.clear()
    if pending:
        outer.update(hashlib.sha256(pending).digest())
    return outer.hexdigest()


def plain_chunks(path: Path) -> Iterator[bytes]:
    """Every byte the file reads as, holes included, in 1 MiB pieces."""
    with path.open("rb") as image:
        while block := image.read(MIB):
            yield block


def dense_file(path: Path, data: dict[int, int], size: int = SIZE) -> Path:
    """The bytes of ``sparse_file(path, data, size)``, every one of them written: no holes."""
    with path.open("wb") as image:
        for piece in zeros_then(data, size):
            image.write(piece)
        os.fsync(image.fileno())
    return path


def flip_at(path: Path, offset: int) -> None:
    with path.open("r+b") as image:
        image.seek(offset)
        old = image.read(1) or b"\0"
        image.seek(offset)
        image.write(bytes([old[0] ^ 0x01]))


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The offsets of every chunk the copying helpers read."""
    offsets: list[int] = []
    real = copying.read_exactly

    def read_exactly(fd: int, length: int, offset: int) -> bytes:
        offsets.append(offset)
        return real(fd, length, offset)

    monkeypatch.setattr(copying, "read_exactly", read_exactly)
    return offsets


@pytest.mark.parametrize(
    "data",
    [DATA, {}, {SIZE - 10: 10}, {0: SIZE}],
    ids=["holes-between", "all-holes", "data-at-the-end", "no-holes"],
)
def test_digest_is_sha256_over_the_chunk_digests(tmp_path: Path, data: dict[int, int]) -> None:
    path = sparse_file(tmp_path / "image", data)

    expected = chunked_sha256(zeros_then(data, SIZE))

    assert copying.content_digest(path) == expected == chunked_sha256(plain_chunks(path))


@pytest.mark.parametrize(
    ("size", "data"),
    [
        (3 * MIB + 123, {3 * MIB + 100: 23}),  # data in the short last chunk
        (3 * MIB + 123, {MIB: 10}),  # the short last chunk is a hole
        (3 * MIB + 123, {MIB - 5: 2 * MIB + 128}),  # an extent running to the very end
        (MIB - 1, {0: 1}),  # one short chunk
        (1, {}),
    ],
    ids=["data", "hole", "extent-to-the-end", "one-short-chunk", "one-zero-byte"],
)
def test_digest_of_a_short_last_chunk(tmp_path: Path, size: int, data: dict[int, int]) -> None:
    sparse = sparse_file(tmp_path / "sparse", data, size)
    dense = dense_file(tmp_path / "dense", data, size)

    expected = chunked_sha256(zeros_then(data, size))

    assert copying.content_digest(sparse) == copying.content_digest(dense) == expected


def test_digest_of_an_empty_file_is_the_sha256_of_no_chunks(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "image", {}, 0)

    assert copying.content_digest(path) == hashlib.sha256(b"").hexdigest()
    assert copying.content_digest(path) != copying.content_digest(
        sparse_file(tmp_path / "one", {}, 1)
    )


@pytest.mark.parametrize(
    "data",
    [DATA, {}, {SIZE - 10: 10}],
    ids=["holes-between", "all-holes", "data-at-the-end"],
)
def test_same_bytes_same_digest_whatever_the_holes(tmp_path: Path, data: dict[int, int]) -> None:
    sparse = sparse_file(tmp_path / "sparse", data)
    dense = dense_file(tmp_path / "dense", data)  # every zero written out, no hole
    mixed = sparse_file(tmp_path / "mixed", data)  # zeros written over some of its holes
    with mixed.open("r+b") as image:
        for offset, length in [(MIB // 2, 2 * MIB), (6 * MIB + 4_096, 4_096), (SIZE - MIB, 512)]:
            image.seek(offset)
            image.write(bytes(length))
        os.fsync(image.fileno())
    for path in (sparse, dense, mixed):  # the same bytes ...
        assert chunked_sha256(plain_chunks(path)) == chunked_sha256(zeros_then(data, SIZE))
    assert allocated_bytes(dense) >= SIZE > allocated_bytes(sparse)  # ... in other layouts

    assert copying.content_digest(sparse) == copying.content_digest(dense)
    assert copying.content_digest(mixed) == copying.content_digest(sparse)


@pytest.mark.parametrize(
    ("offset", "in_data"),
    [
        (0, True),  # the first byte of the first extent
        (5_050, True),  # inside a short extent that shares a chunk with another
        (4 * MIB + 6, True),  # the last byte of an unaligned extent
        (11 * MIB, True),  # inside an extent, on a chunk boundary
        (6 * MIB, False),  # a hole, on a chunk boundary
        (8 * MIB + 12_345, False),  # the middle of a hole
        (SIZE - 1, False),  # the very last byte, a hole
    ],
)
@pytest.mark.parametrize("layout", ["sparse", "dense"])
def test_one_changed_byte_anywhere_changes_the_digest(
    tmp_path: Path, offset: int, in_data: bool, layout: str
) -> None:
    make = sparse_file if layout == "sparse" else dense_file
    path = make(tmp_path / "image", DATA)
    before = copying.content_digest(path)
    with path.open("rb") as image:
        extents = list(copying.data_extents(image.fileno(), SIZE))
    assert any(start <= offset < end for start, end in extents) == (in_data or layout == "dense")

    flip_at(path, offset)

    assert copying.content_digest(path) != before
    assert copying.content_digest(path) == chunked_sha256(plain_chunks(path))


def test_digest_reads_only_the_chunks_holding_data(
    tmp_path: Path, counted_reads: list[int]
) -> None:
    size = 8 * 2**30  # 8192 chunks
    path = sparse_file(tmp_path / "image", {5_000: 100, 3 * 2**30 + MIB - 10: 20}, size)

    digest = copying.content_digest(path)

    touched = {0, 3 * 2**10, 3 * 2**10 + 1}  # the 20 bytes straddle two chunks
    assert sorted(counted_reads) == [index * MIB for index in sorted(touched)]
    zeros = hashlib.sha256(bytes(MIB)).digest()
    chunk_digests = (
        hashlib.sha256(read_at(path, index * MIB, MIB)).digest() if index in touched else zeros
        for index in range(size // MIB)
    )
    assert digest == hashlib.sha256(b"".join(chunk_digests)).hexdigest()


@pytest.mark.usefixtures("no_extents")
def test_without_seek_data_the_digest_reads_everything_and_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted_reads: list[int]
) -> None:
    path = sparse_file(tmp_path / "image", DATA)

    digest = copying.content_digest(path)

    assert len(counted_reads) == SIZE // MIB
    monkeypatch.setattr(extents, "_SEEK_DATA", os.SEEK_DATA)
    assert digest == copying.content_digest(path) == chunked_sha256(zeros_then(DATA, SIZE))


@pytest.mark.parametrize("seek_data", [True, False], ids=["seek-data", "chunked"])
def test_copy_keeps_every_byte_and_every_hole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seek_data: bool
) -> None:
    if not seek_data:
        monkeypatch.setattr(extents, "_SEEK_DATA", None)
    source = sparse_file(tmp_path / "image", DATA)

    written = copying.copy_sparse(source, tmp_path / "copy")

    copy = tmp_path / "copy"
    assert copy.stat().st_size == SIZE
    for offset, length in DATA.items():
        assert read_at(copy, offset, length) == pattern(offset, length)
    assert copying.content_digest(copy) == chunked_sha256(plain_chunks(source))
    assert sum(DATA.values()) <= written <= 6 * MIB  # at most the 6 chunks holding data
    assert allocated_bytes(copy) < 8 * MIB


def test_copy_does_not_write_chunks_of_zeros(tmp_path: Path) -> None:
    source = sparse_file(tmp_path / "image", {0: 100})
    with source.open("r+b") as image:  # allocated, but all zeros
        image.seek(4 * MIB)
        image.write(bytes(8 * MIB))
        os.fsync(image.fileno())

    written = copying.copy_sparse(source, tmp_path / "copy")

    assert allocated_bytes(source) >= 8 * MIB
    assert written <= MIB  # the chunk holding the 100 bytes, not the 8 MiB of zeros
    assert allocated_bytes(tmp_path / "copy") <= 2 * MIB
    assert plain_sha256(tmp_path / "copy") == plain_sha256(source)


def test_copy_never_overwrites_a_file(tmp_path: Path) -> None:
    source = sparse_file(tmp_path / "image", DATA)
    (tmp_path / "copy").write_bytes(b"precious")

    with pytest.raises(FileExistsError):
        copying.copy_sparse(source, tmp_path / "copy")

    assert (tmp_path / "copy").read_bytes() == b"precious"


def test_flip_byte_inverts_the_first_byte_of_the_first_extent(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "image", {3 * MIB + 7: 10})
    with path.open("rb") as image:
        start, _ = next(copying.data_extents(image.fileno(), SIZE))
    old, before = read_at(path, start, 1)[0], copying.content_digest(path)

    offset = copying.flip_byte(path)

    assert offset == start <= 3 * MIB + 7
    assert read_at(path, offset, 1)[0] == old ^ 0xFF
    assert copying.content_digest(path) != before


def test_flip_byte_in_a_file_of_holes_writes_a_byte_the_digest_reads(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "image", {})
    before = copying.content_digest(path)

    offset = copying.flip_byte(path)

    assert offset == 0
    assert read_at(path, 0, 1) == b"\xff"
    assert path.stat().st_size == SIZE
    assert copying.content_digest(path) != before
