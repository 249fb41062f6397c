"""The blocking sparse copy and checksum helpers, on small files."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from cinderblock.drivers import copying
from tests.unit.drivers.given import MIB, allocated_bytes, pattern, read_at, write_at, zeros_then

SIZE = 64 * MIB
DATA = {0: 4_096, 5_000: 100, 3 * MIB + 7: MIB, 40 * MIB: 2 * MIB + 3}


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
    monkeypatch.setattr(copying, "SEEK_DATA", None)


def test_extents_cover_the_data_and_skip_the_holes(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "image", {8 * MIB: 100, 40 * MIB: MIB})

    with path.open("rb") as image:
        extents = list(copying.data_extents(image.fileno(), SIZE))

    assert len(extents) == 2
    assert extents[0][0] <= 8 * MIB < 8 * MIB + 100 <= extents[0][1] < 40 * MIB
    assert extents[1][0] <= 40 * MIB < 41 * MIB <= extents[1][1] <= SIZE


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
        if whence == copying.SEEK_DATA:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_lseek(fd, offset, whence)

    monkeypatch.setattr(os, "lseek", lseek)
    with path.open("rb") as image:
        assert list(copying.data_extents(image.fileno(), SIZE)) == [(0, SIZE)]
    copying.copy_sparse(path, tmp_path / "copy")

    assert plain_sha256(tmp_path / "copy") == plain_sha256(path)
    assert allocated_bytes(tmp_path / "copy") < 8 * MIB


@pytest.mark.parametrize(
    "data",
    [DATA, {}, {SIZE - 10: 10}, {0: SIZE}],
    ids=["holes-between", "all-holes", "data-at-the-end", "no-holes"],
)
def test_sha256_hashes_holes_as_zeros(tmp_path: Path, data: dict[int, int]) -> None:
    path = sparse_file(tmp_path / "image", data)

    expected = hashlib.sha256()
    for piece in zeros_then(data, SIZE):
        expected.update(piece)

    assert copying.sha256_file(path) == expected.hexdigest() == plain_sha256(path)


def test_sha256_of_an_empty_file(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "image", {}, 0)

    assert copying.sha256_file(path) == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("extents", [True, False], ids=["seek-data", "chunked"])
def test_copy_keeps_every_byte_and_every_hole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extents: bool
) -> None:
    if not extents:
        monkeypatch.setattr(copying, "SEEK_DATA", None)
    source = sparse_file(tmp_path / "image", DATA)

    written = copying.copy_sparse(source, tmp_path / "copy")

    copy = tmp_path / "copy"
    assert copy.stat().st_size == SIZE
    for offset, length in DATA.items():
        assert read_at(copy, offset, length) == pattern(offset, length)
    assert copying.sha256_file(copy) == plain_sha256(source)
    assert sum(DATA.values()) <= written <= 6 * MIB  # at most the 6 chunks holding data
    assert allocated_bytes(copy) < 8 * MIB


def test_copy_does_not_write_chunks_of_zeros(tmp_path: Path) -> None:
    source = sparse_file(tmp_path / "image", {0: 100})
    with source.open("r+b") as image:  # allocated, but all zeros
        image.seek(8 * MIB)
        image.write(bytes(16 * MIB))
        os.fsync(image.fileno())

    written = copying.copy_sparse(source, tmp_path / "copy")

    assert allocated_bytes(source) >= 16 * MIB
    assert written <= MIB  # the chunk holding the 100 bytes, not the 16 MiB of zeros
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
    old, before = read_at(path, start, 1)[0], copying.sha256_file(path)

    offset = copying.flip_byte(path)

    assert offset == start <= 3 * MIB + 7
    assert read_at(path, offset, 1)[0] == old ^ 0xFF
    assert copying.sha256_file(path) != before
