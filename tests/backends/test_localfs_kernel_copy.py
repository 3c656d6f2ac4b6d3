"""LocalFS upload/download of a file object: the kernel's copy for plain local files, from and
at their position, with progress in chunks and atomic publish; the read loop for the rest."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from keg_storage import LocalFSStorage
from keg_storage.testing import MiB, payload
from tests.conformance.binding import leftovers

DATA = payload(20 * MiB + 7, seed=3)


@pytest.fixture
def storage(tmp_path: Path) -> LocalFSStorage:
    (tmp_path / "root").mkdir()
    return LocalFSStorage(tmp_path / "root")


@pytest.fixture
def kernel_copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts os.copy_file_range copied, call by call (the real call, recorded)."""
    copies: list[int] = []
    real: Callable[..., int] = os.copy_file_range

    def recorded(*args: Any) -> int:
        copied = real(*args)
        copies.append(copied)
        return copied

    monkeypatch.setattr(os, "copy_file_range", recorded)
    return copies


def test_upload_copies_from_the_file_position_in_the_kernel(
    storage: LocalFSStorage, tmp_path: Path, kernel_copies: list[int]
) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(DATA)
    progress: list[int] = []
    with local.open("rb") as file:
        file.read(1000)  # buffered: the descriptor's offset is past 1000
        storage.upload(file, "up.bin", progress_callback=progress.append)
        assert file.tell() == len(DATA)
        assert file.read() == b""
    assert (storage.root / "up.bin").read_bytes() == DATA[1000:]
    assert sum(kernel_copies) == len(DATA) - 1000
    assert len(kernel_copies) >= 3  # in chunks (8 MiB), each reported
    assert progress == sorted(progress) and len(progress) >= 2
    assert progress[-1] == len(DATA) - 1000
    assert leftovers(storage) == []


def test_upload_of_a_bytesio_or_a_pipe_reads_it(
    storage: LocalFSStorage, kernel_copies: list[int]
) -> None:
    source = io.BytesIO(DATA)
    source.seek(5)
    storage.upload(source, "bytes.bin")
    assert (storage.root / "bytes.bin").read_bytes() == DATA[5:]
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=_write_all, args=(write_end, DATA[: 3 * MiB]))
    writer.start()
    with os.fdopen(read_end, "rb") as pipe:
        storage.upload(pipe, "pipe.bin")
    writer.join()
    assert (storage.root / "pipe.bin").read_bytes() == DATA[: 3 * MiB]
    assert kernel_copies == []


def _write_all(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(data)


def test_download_writes_at_the_file_position_in_the_kernel(
    storage: LocalFSStorage, tmp_path: Path, kernel_copies: list[int]
) -> None:
    (storage.root / "stored.bin").write_bytes(DATA)
    target = tmp_path / "target.bin"
    progress: list[int] = []
    with target.open("wb") as file:
        file.write(b"HEADER")  # still in the file object's buffer
        storage.download("stored.bin", file, progress_callback=progress.append)
        assert file.tell() == 6 + len(DATA)
        file.write(b"TRAILER")
    assert target.read_bytes() == b"HEADER" + DATA + b"TRAILER"
    assert sum(kernel_copies) == len(DATA)
    assert progress == sorted(progress) and progress[-1] == len(DATA)


@pytest.mark.parametrize("mode", ["ab", "r+b"])
def test_download_into_an_appending_or_read_write_file(
    storage: LocalFSStorage, tmp_path: Path, mode: str
) -> None:
    """An O_APPEND target (the kernel refuses a ranged copy into it) and a read/write one (not
    a plain writer) get the same bytes through the other ways."""
    (storage.root / "stored.bin").write_bytes(DATA[:MiB])
    target = tmp_path / "target.bin"
    target.write_bytes(b"OLD")
    with target.open(mode) as file:
        file.seek(0, io.SEEK_END)
        storage.download("stored.bin", file)
    assert target.read_bytes() == b"OLD" + DATA[:MiB]


def test_download_into_a_bytesio(storage: LocalFSStorage, kernel_copies: list[int]) -> None:
    (storage.root / "stored.bin").write_bytes(DATA)
    target = io.BytesIO()
    storage.download("stored.bin", target)
    assert target.getvalue() == DATA
    assert kernel_copies == []


def test_a_progress_callback_that_raises_leaves_the_old_file_or_the_whole_new_one(
    storage: LocalFSStorage, tmp_path: Path
) -> None:
    """CONTRACT §3: the transfer stops at its next chunk (a copy this fast may have ended)."""
    local = tmp_path / "local.bin"
    local.write_bytes(DATA)
    (storage.root / "up.bin").write_bytes(b"previous")

    def stop(count: int) -> None:
        raise RuntimeError("stop")

    with local.open("rb") as file, pytest.raises(RuntimeError, match="stop"):
        storage.upload(file, "up.bin", progress_callback=stop)
    assert (storage.root / "up.bin").read_bytes() in (b"previous", DATA)
    assert leftovers(storage) == []


def test_upload_without_overwrite_refuses_an_existing_file(
    storage: LocalFSStorage, tmp_path: Path
) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(DATA[:100])
    (storage.root / "up.bin").write_bytes(b"previous")
    file: IO[bytes]
    with local.open("rb") as file, pytest.raises(FileExistsError):
        storage.upload(file, "up.bin", overwrite=False)
    assert (storage.root / "up.bin").read_bytes() == b"previous"
    with local.open("rb") as file:
        storage.upload(file, "new.bin", overwrite=False)
    assert (storage.root / "new.bin").read_bytes() == DATA[:100]
    assert leftovers(storage) == []
