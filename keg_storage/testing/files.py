"""CONTRACT §3: reading and writing through open()."""

from __future__ import annotations

import gc
import io
import tarfile
import threading
import time
import warnings
import zipfile

import pytest

from keg_storage import (
    FileMode,
    FileNotFoundInStorageError,
    StorageBackend,
    StorageError,
    UnsupportedOperationError,
)

from .helpers import BackendCases, MiB, names, payload, read, write


class FileCases(BackendCases):
    """CONTRACT §3: reading and writing through ``open()``."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("r", FileMode.read),
            ("rb", FileMode.read),
            ("rt", FileMode.read | FileMode.text),
            ("tr", FileMode.read | FileMode.text),
            ("w", FileMode.write),
            ("wt", FileMode.write | FileMode.text),
            ("wb", FileMode.write),
            ("r+", FileMode.read | FileMode.write),
            ("r+b", FileMode.read | FileMode.write),
            ("rw", FileMode.read | FileMode.write),
            ("wr", FileMode.read | FileMode.write),
        ],
    )
    def test_file_mode_parsing(self, text: str, expected: FileMode) -> None:
        assert FileMode.as_mode(text) == expected
        assert FileMode.as_mode(expected) is expected

    @pytest.mark.parametrize("text", ["a", "x", "rx", "", "b", "+", "ra", "rbt"])
    def test_file_mode_refuses_other_letters(self, text: str) -> None:
        with pytest.raises(ValueError):
            FileMode.as_mode(text)

    def test_file_mode_refuses_other_types(self) -> None:
        with pytest.raises(ValueError):
            FileMode.as_mode(1)  # type: ignore[arg-type]

    def test_file_mode_str(self) -> None:
        assert str(FileMode.read) == "rb"
        assert str(FileMode.write) == "wb"
        assert str(FileMode.read | FileMode.write) == "rwb"
        assert str(FileMode.read | FileMode.text) == "rt"
        assert str(FileMode.write | FileMode.text) == "wt"

    def test_round_trip(self, storage: StorageBackend) -> None:
        data = payload(1000)
        with storage.open("file.bin", FileMode.write) as file:
            assert file.writable() and not file.readable()
            assert file.write(data[:10]) == 10
            file.write(memoryview(data)[10:])
        assert read(storage, "file.bin") == data

    def test_large_file_in_many_parts(self, storage: StorageBackend) -> None:
        data = payload(13 * MiB + 7, seed=1)
        with storage.open("big.bin", "wb") as file:
            for start in range(0, len(data), MiB // 2):
                file.write(data[start : start + MiB // 2])
        with storage.open("big.bin", "rb") as file:
            chunks = []
            while chunk := file.read(3 * MiB):
                chunks.append(chunk)
        assert b"".join(chunks) == data
        assert storage.stat("big.bin").size == len(data)

    def test_missing_file_raises_at_open(self, storage: StorageBackend) -> None:
        with pytest.raises(FileNotFoundInStorageError) as excinfo:
            storage.open("missing/file.txt", "rb")
        assert isinstance(excinfo.value, FileNotFoundError)
        assert "missing/file.txt" in str(excinfo.value)
        assert storage.name in str(excinfo.value)

    def test_reader_is_a_raw_binary_file(self, storage: StorageBackend) -> None:
        data = payload(100_000, seed=2)
        write(storage, "raw.bin", data)
        with storage.open("raw.bin") as file:
            assert file.readable() and file.seekable() and not file.writable()
            assert file.read(10) == data[:10]
            assert file.tell() == 10
            buffer = bytearray(20)
            assert file.readinto(buffer) == 20
            assert bytes(buffer) == data[10:30]
            assert file.seek(-10, io.SEEK_END) == len(data) - 10
            assert file.read() == data[-10:]
            assert file.read(5) == b""
            assert file.seek(50_000) == 50_000
            assert file.seek(5, io.SEEK_CUR) == 50_005
            assert file.read(5) == data[50_005:50_010]
            file.seek(0)
            assert file.read(-1) == data
            file.seek(len(data) + 100)
            assert file.read(10) == b""
        assert file.closed
        file.close()

    def test_reader_iterates_in_chunks(self, storage: StorageBackend) -> None:
        data = payload(1000, seed=3)
        write(storage, "chunks.bin", data)
        with storage.open("chunks.bin") as file:
            assert list(file.iter_chunks(300)) == [
                data[0:300],
                data[300:600],
                data[600:900],
                data[900:],
            ]
        with storage.open("chunks.bin") as file:
            assert b"".join(file) == data

    def test_buffered_reader_zipfile_and_tarfile(self, storage: StorageBackend) -> None:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("inner/a.txt", b"alpha" * 1000)
            zipped.writestr("b.txt", b"beta")
        write(storage, "archive.zip", archive.getvalue())
        with storage.open("archive.zip") as file, zipfile.ZipFile(file) as zipped:
            assert sorted(zipped.namelist()) == ["b.txt", "inner/a.txt"]
            assert zipped.read("inner/a.txt") == b"alpha" * 1000

        tarred = io.BytesIO()
        with tarfile.open(fileobj=tarred, mode="w:gz") as tar:
            info = tarfile.TarInfo("member.txt")
            info.size = 6
            tar.addfile(info, io.BytesIO(b"member"))
        write(storage, "archive.tar.gz", tarred.getvalue())
        with storage.open("archive.tar.gz") as file, tarfile.open(fileobj=file) as tar:
            member = tar.extractfile("member.txt")
            assert member is not None and member.read() == b"member"

        with storage.open("archive.zip") as file:
            buffered = io.BufferedReader(file)
            assert buffered.read() == archive.getvalue()

    def test_exception_in_with_block_keeps_old_content(self, storage: StorageBackend) -> None:
        write(storage, "doc.txt", b"old content")
        with pytest.raises(RuntimeError), storage.open("doc.txt", "wb") as file:
            file.write(payload(7 * MiB, seed=4))
            raise RuntimeError("boom")
        assert read(storage, "doc.txt") == b"old content"
        assert names(storage) == ["doc.txt"]

    def test_exception_before_first_write_creates_nothing(self, storage: StorageBackend) -> None:
        with pytest.raises(RuntimeError), storage.open("new.txt", "wb"):
            raise RuntimeError("boom")
        assert not storage.exists("new.txt")
        assert names(storage) == []

    def test_abort_publishes_nothing(self, storage: StorageBackend) -> None:
        file = storage.open("aborted.bin", "wb")
        file.write(payload(6 * MiB, seed=5))
        file.abort()
        file.abort()
        file.close()
        assert not storage.exists("aborted.bin")
        assert names(storage) == []

    def test_a_write_that_publishes_nothing_leaves_no_directory(
        self, storage: StorageBackend
    ) -> None:
        """An aborted write into new directories, and one that fails in its ``with`` block,
        leave nothing a one-level listing shows, as on an object store, which has no
        directories to leave; a directory that holds a file stays."""
        write(storage, "kept/file.txt", b"kept")
        file = storage.open("new/deep/aborted.bin", "wb")
        file.write(b"x")
        file.abort()
        with pytest.raises(RuntimeError), storage.open("kept/sub/failed.bin", "wb") as failed:
            failed.write(b"x")
            raise RuntimeError("boom")
        assert [entry.name for entry in storage.list("", recursive=False)] == ["kept/"]
        assert [entry.name for entry in storage.list("kept/", recursive=False)] == ["kept/file.txt"]

    @pytest.mark.parametrize("size", [0, MiB, 12 * MiB], ids=["0B", "1MiB", "12MiB"])
    def test_unclosed_writer_is_discarded_with_a_warning(
        self, storage: StorageBackend, size: int
    ) -> None:
        """Collecting an unclosed writer never blocks the collecting thread (the finalizer does no
        network wait there), warns once per writer, publishes nothing and removes its temp state."""
        write(storage, "kept.txt", b"kept")
        data = payload(size, seed=6)
        caught: list[warnings.WarningMessage] = []

        def drop_unclosed_writers() -> None:
            replacing, creating = storage.open("kept.txt", "wb"), storage.open("new/doc.bin", "wb")
            replacing.write(data)
            creating.write(data)
            with warnings.catch_warnings(record=True) as recorded:
                warnings.simplefilter("always")
                del replacing, creating
                gc.collect()
            caught.extend(recorded)

        collector = threading.Thread(target=drop_unclosed_writers, daemon=True)
        collector.start()
        collector.join(30)
        assert not collector.is_alive(), "collecting an unclosed writer hung"
        discarded = [w for w in caught if "without close()" in str(w.message)]
        assert [w.category for w in discarded] == [ResourceWarning, ResourceWarning]
        assert read(storage, "kept.txt") == b"kept"
        assert names(storage) == ["kept.txt"]
        deadline = time.monotonic() + 10  # network backends clean up off the collecting thread
        while self.leftovers(storage) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.leftovers(storage) == []

    def test_new_content_is_invisible_until_close(self, storage: StorageBackend) -> None:
        write(storage, "doc.txt", b"v1")
        file = storage.open("doc.txt", "wb")
        file.write(b"v2")
        assert read(storage, "doc.txt") == b"v1"
        file.close()
        assert read(storage, "doc.txt") == b"v2"

    def test_empty_file_is_published(self, storage: StorageBackend) -> None:
        with storage.open("empty.txt", "wb"):
            pass
        assert storage.exists("empty.txt")
        assert read(storage, "empty.txt") == b""
        assert storage.stat("empty.txt").size == 0
        assert [(e.name, e.size) for e in storage.list()] == [("empty.txt", 0)]

    def test_overwrite_replaces_whole_content(self, storage: StorageBackend) -> None:
        write(storage, "doc.txt", b"a much longer first version")
        write(storage, "doc.txt", b"short")
        assert read(storage, "doc.txt") == b"short"

    def test_closed_file_refuses_io(self, storage: StorageBackend) -> None:
        write(storage, "doc.txt", b"data")
        file = storage.open("doc.txt")
        file.close()
        with pytest.raises(ValueError):
            file.read(1)

    def test_reader_refuses_write_and_writer_refuses_read(self, storage: StorageBackend) -> None:
        write(storage, "doc.txt", b"data")
        with storage.open("doc.txt", "rb") as reader, pytest.raises(io.UnsupportedOperation):
            reader.write(b"x")
        with storage.open("other.txt", "wb") as writer, pytest.raises(io.UnsupportedOperation):
            writer.read(1)

    def test_read_write_mode(self, storage: StorageBackend) -> None:
        write(storage, "rw.bin", b"0123456789")
        if not storage.supports_read_write:
            with pytest.raises(UnsupportedOperationError):
                storage.open("rw.bin", "r+")
            return
        with storage.open("rw.bin", "r+") as file:
            assert file.read(4) == b"0123"
            file.write(b"ab")
            file.seek(0)
            assert file.read() == b"0123ab6789"
        assert read(storage, "rw.bin") == b"0123ab6789"

    def test_extra_args(self, storage: StorageBackend) -> None:
        extra = {"ContentType": "text/plain", "ContentEncoding": "identity", "Metadata": {"k": "v"}}
        with storage.open("typed.txt", "wb", extra_args=extra) as file:
            file.write(b"text")
        assert read(storage, "typed.txt") == b"text"
        content_type = storage.stat("typed.txt").content_type
        assert content_type in (None, "text/plain")
        if storage.supported_extra_args is not None:
            with pytest.raises(UnsupportedOperationError) as excinfo:
                storage.open("other.txt", "wb", extra_args={"ACL": "public-read"})
            assert "ACL" in str(excinfo.value)
            assert not storage.exists("other.txt")

    def test_metadata_must_be_strings(self, storage: StorageBackend) -> None:
        with pytest.raises(StorageError):
            storage.open("meta.txt", "wb", extra_args={"Metadata": {"n": 1}})
