"""FileSlice and local_file_extent: how a local file's blocks are read for streamed uploads,
checked on real files."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import pytest

from keg_storage.backends.streams import FileSlice, local_file_extent
from keg_storage.errors import StorageError

DATA = bytes(range(256)) * 64  # 16 KiB


@pytest.fixture
def local(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    return path


def test_slice_reads_its_range_and_rewinds(local: Path) -> None:
    with local.open("rb") as file:
        piece = FileSlice(file.fileno(), 1000, 5000)
        assert len(piece) == 5000
        assert piece.read(3000) + piece.read(3000) == DATA[1000:6000]
        assert piece.read() == b""
        assert piece.tell() == 5000
        assert piece.seek(0) == 0  # what a retry does before sending the body again
        assert piece.read() == DATA[1000:6000]
        piece.seek(-10, io.SEEK_END)
        assert piece.read() == DATA[5990:6000]


def test_slice_works_behind_a_buffered_reader(local: Path) -> None:
    with local.open("rb") as file:
        buffered = io.BufferedReader(FileSlice(file.fileno(), 10, 100), buffer_size=7)
        assert buffered.read() == DATA[10:110]


def test_slice_counts_each_byte_once_across_a_rewind(local: Path) -> None:
    counted: list[int] = []
    with local.open("rb") as file:
        piece = FileSlice(file.fileno(), 0, 1000, count_bytes=counted.append)
        piece.read(600)
        piece.seek(0)  # a retry sends the body again
        piece.read()
    assert counted == [600, 400]


def test_slices_of_one_file_do_not_share_a_position(local: Path) -> None:
    with local.open("rb") as file:
        first, second = FileSlice(file.fileno(), 0, 100), FileSlice(file.fileno(), 100, 100)
        assert first.read(50) == DATA[:50]
        assert second.read(50) == DATA[100:150]
        assert first.read() == DATA[50:100]
        assert file.tell() == 0  # the file object's own position is untouched


def test_slice_of_a_file_that_shrank_raises(local: Path) -> None:
    with local.open("rb") as file:
        piece = FileSlice(file.fileno(), 0, len(DATA), backend="test", path="remote.bin")
        os.truncate(local, 4096)
        assert len(piece.read(4096)) == 4096
        with pytest.raises(StorageError, match=r"ended at byte 4096.*remote\.bin"):
            piece.read()


def test_extent_of_a_file_opened_by_open(local: Path) -> None:
    with local.open("rb") as file:
        file.read(100)
        fd, position, left = local_file_extent(file) or (None, None, None)
        assert (fd, position, left) == (file.fileno(), 100, len(DATA) - 100)
    with local.open("rb", buffering=0) as raw:
        assert local_file_extent(raw) == (raw.fileno(), 0, len(DATA))


def test_extent_flushes_a_file_written_then_rewound(tmp_path: Path) -> None:
    with (tmp_path / "scratch").open("w+b") as scratch:
        scratch.write(b"x" * 100)
        scratch.seek(10)
        assert local_file_extent(scratch) == (scratch.fileno(), 10, 90)


def test_no_extent_for_what_cannot_be_read_by_offset(local: Path, tmp_path: Path) -> None:
    assert local_file_extent(io.BytesIO(DATA)) is None
    compressed = tmp_path / "data.gz"
    compressed.write_bytes(gzip.compress(DATA))
    with gzip.open(compressed, "rb") as unzipped:  # fileno() is the compressed file's
        assert local_file_extent(unzipped) is None  # type: ignore[arg-type]
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as pipe, open(write_end, "wb"):
        assert local_file_extent(pipe) is None
