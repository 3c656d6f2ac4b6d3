"""CONTRACT §4: whole-file operations."""

from __future__ import annotations

import gzip
import io
import re
import threading
from pathlib import Path
from typing import IO, Any, cast

import arrow
import pytest

from keg_storage import FileNotFoundInStorageError, InvalidPathError, StorageBackend

from .helpers import BackendCases, MiB, names, payload, read, write


class ProgressLog:
    """Records progress callbacks and the threads they ran on."""

    def __init__(self) -> None:
        self.values: list[int] = []
        self.threads: set[int] = set()

    def __call__(self, count: int) -> None:
        self.values.append(count)
        self.threads.add(threading.get_ident())

    def check(self, total: int) -> None:
        assert self.values, "the callback was never called"
        assert self.values == sorted(self.values), "progress decreased"
        assert self.values[-1] == total
        assert self.threads == {threading.get_ident()}


def _tree(storage: StorageBackend) -> None:
    for path in ["a.txt", "ab/x.txt", "a/b.txt", "a/c/d.txt", "a/c/e.txt", "z.txt"]:
        write(storage, path, path.encode())


class OperationCases(BackendCases):
    """CONTRACT §4: whole-file operations."""

    def test_upload_and_download_with_progress(self, storage: StorageBackend) -> None:
        data = payload(11 * MiB + 3, seed=10)
        upload_log = ProgressLog()
        storage.upload(io.BytesIO(data), "up/load.bin", progress_callback=upload_log)
        upload_log.check(len(data))
        target = io.BytesIO()
        download_log = ProgressLog()
        storage.download("up/load.bin", target, progress_callback=download_log)
        download_log.check(len(data))
        assert target.getvalue() == data

    def test_upload_of_a_local_file_stores_the_rest_from_its_position(
        self, storage: StorageBackend, tmp_path: Path
    ) -> None:
        data = payload(21 * MiB + 5, seed=13)
        local = tmp_path / "local.bin"
        local.write_bytes(data)
        log = ProgressLog()
        with local.open("rb") as file:
            file.seek(1000)
            storage.upload(file, "from/file.bin", progress_callback=log)
        log.check(len(data) - 1000)
        assert read(storage, "from/file.bin") == data[1000:]

    def test_upload_of_a_file_wrapper_stores_what_it_yields(
        self, storage: StorageBackend, tmp_path: Path
    ) -> None:
        """A GzipFile's fileno() is the compressed file: what is stored must be what it reads."""
        data = payload(7 * MiB, seed=14) * 2
        local = tmp_path / "local.gz"
        with gzip.open(local, "wb") as compressed:
            compressed.write(data)
        with gzip.open(local, "rb") as file:
            storage.upload(cast(IO[bytes], file), "unzipped.bin")
        assert read(storage, "unzipped.bin") == data

    def test_empty_transfers_report_zero_once(self, storage: StorageBackend) -> None:
        upload_log = ProgressLog()
        storage.upload(io.BytesIO(b""), "empty.bin", progress_callback=upload_log)
        assert upload_log.values == [0]
        download_log = ProgressLog()
        target = io.BytesIO()
        storage.download("empty.bin", target, progress_callback=download_log)
        assert download_log.values == [0]
        assert target.getvalue() == b""

    def test_upload_extra_args(self, storage: StorageBackend) -> None:
        storage.upload(
            io.BytesIO(b"{}"), "data.json", extra_args={"ContentType": "application/json"}
        )
        assert storage.stat("data.json").content_type in (None, "application/json")

    def test_failing_source_publishes_nothing(self, storage: StorageBackend) -> None:
        class Broken(io.RawIOBase):
            def __init__(self) -> None:
                self.calls = 0

            def readable(self) -> bool:
                return True

            def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
                self.calls += 1
                if self.calls > 2:
                    raise OSError("source broke")
                buffer[:] = b"x" * len(buffer)
                return len(buffer)

        write(storage, "target.bin", b"previous")
        with pytest.raises(OSError, match="source broke"):
            source: Any = Broken()  # its readinto fills a bytearray only: enough for the reader
            storage.upload(io.BufferedReader(source, 4 * MiB), "target.bin")
        assert read(storage, "target.bin") == b"previous"
        assert names(storage) == ["target.bin"]

    def test_progress_callback_that_raises_stops_the_upload(self, storage: StorageBackend) -> None:
        data = payload(20 * MiB, seed=11)

        def cancel(count: int) -> None:
            raise KeyboardInterrupt("user cancelled")

        with pytest.raises(KeyboardInterrupt):
            storage.upload(io.BytesIO(data), "cancelled.bin", progress_callback=cancel)
        # The transfer stops at its next chunk; if its last chunk was already on its way, the file
        # is whole. Never partial.
        if storage.exists("cancelled.bin"):
            assert read(storage, "cancelled.bin") == data

    def test_get_and_put(self, storage: StorageBackend, tmp_path: Path) -> None:
        data = payload(3 * MiB, seed=12)
        local = tmp_path / "local.bin"
        local.write_bytes(data)
        put_log = ProgressLog()
        storage.put(str(local), "remote/file.bin", progress_callback=put_log)
        put_log.check(len(data))
        back = tmp_path / "back.bin"
        storage.get("remote/file.bin", back)
        assert back.read_bytes() == data

    def test_get_of_missing_file_leaves_destination_alone(
        self, storage: StorageBackend, tmp_path: Path
    ) -> None:
        local = tmp_path / "local"
        local.mkdir()
        target = local / "keep.txt"
        target.write_bytes(b"mine")
        with pytest.raises(FileNotFoundInStorageError):
            storage.get("missing.bin", target)
        assert target.read_bytes() == b"mine"
        assert sorted(p.name for p in local.iterdir()) == ["keep.txt"]

    def test_copy(self, storage: StorageBackend) -> None:
        data = payload(6 * MiB, seed=13)
        write(storage, "a/source.bin", data)
        write(storage, "b/target.bin", b"to be replaced")
        storage.copy("a/source.bin", "b/target.bin")
        storage.copy("a/source.bin", "c/new.bin")
        assert read(storage, "b/target.bin") == data
        assert read(storage, "c/new.bin") == data
        assert read(storage, "a/source.bin") == data
        with pytest.raises(FileNotFoundInStorageError):
            storage.copy("missing.bin", "x.bin")
        assert not storage.exists("x.bin")

    def test_move(self, storage: StorageBackend) -> None:
        write(storage, "a/source.txt", b"moving")
        write(storage, "b/target.txt", b"to be replaced")
        storage.move("a/source.txt", "b/target.txt")
        assert read(storage, "b/target.txt") == b"moving"
        assert names(storage) == ["b/target.txt"]
        assert names(storage, recursive=False) == ["b/"]
        with pytest.raises(FileNotFoundInStorageError):
            storage.move("missing.txt", "x.txt")
        storage.move("b/target.txt", "b/target.txt")
        assert read(storage, "b/target.txt") == b"moving"

    def test_delete_is_idempotent(self, storage: StorageBackend) -> None:
        write(storage, "dir/doomed.txt", b"x")
        storage.delete("dir/doomed.txt")
        storage.delete("dir/doomed.txt")
        storage.delete("never/existed.txt")
        assert names(storage) == []
        assert names(storage, recursive=False) == []

    def test_delete_of_directory_prefix_deletes_nothing(self, storage: StorageBackend) -> None:
        write(storage, "dir/file.txt", b"x")
        storage.delete("dir")
        assert names(storage) == ["dir/file.txt"]

    def test_exists_and_stat(self, storage: StorageBackend) -> None:
        before = arrow.utcnow().shift(seconds=-60)
        write(storage, "dir/file.txt", b"12345")
        assert storage.exists("dir/file.txt")
        assert not storage.exists("dir/missing.txt")
        assert not storage.exists("dir")
        info = storage.stat("dir/file.txt")
        assert info.size == 5
        assert isinstance(info.last_modified, arrow.Arrow)
        assert info.last_modified.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert before <= info.last_modified <= arrow.utcnow().shift(seconds=60)
        assert info.etag is None or isinstance(info.etag, str)
        with pytest.raises(FileNotFoundInStorageError):
            storage.stat("dir/missing.txt")
        with pytest.raises(FileNotFoundInStorageError):
            storage.stat("dir")
        with pytest.raises(InvalidPathError):
            storage.stat("dir/file.txt/")
        with pytest.raises(InvalidPathError):
            storage.exists("dir/")

    def test_etag_changes_with_content(self, storage: StorageBackend) -> None:
        write(storage, "doc.txt", b"one")
        first = storage.stat("doc.txt").etag
        write(storage, "doc.txt", b"two, longer")
        second = storage.stat("doc.txt").etag
        assert first != second

    def test_etag_has_one_form(self, storage: StorageBackend) -> None:
        # HTTP's quoted strong form on every backend (CONTRACT §4), what if_match will take.
        for key, data in (("empty.txt", b""), ("small.txt", b"small")):
            write(storage, key, data)
            etag = storage.stat(key).etag
            assert etag is not None and re.fullmatch(r'"[!#-~]+"', etag), etag

    def test_list_recursive(self, storage: StorageBackend) -> None:
        _tree(storage)
        assert names(storage) == ["a.txt", "a/b.txt", "a/c/d.txt", "a/c/e.txt", "ab/x.txt", "z.txt"]
        assert names(storage, "a") == ["a/b.txt", "a/c/d.txt", "a/c/e.txt"]
        assert names(storage, "a/") == ["a/b.txt", "a/c/d.txt", "a/c/e.txt"]
        assert names(storage, "a/c") == ["a/c/d.txt", "a/c/e.txt"]
        assert names(storage, "missing") == []
        assert names(storage, "a.txt") == []
        sizes = {entry.name: entry.size for entry in storage.list()}
        assert sizes["a/c/d.txt"] == len(b"a/c/d.txt")
        assert all(isinstance(entry.last_modified, arrow.Arrow) for entry in storage.list())

    def test_list_one_level(self, storage: StorageBackend) -> None:
        _tree(storage)
        top = storage.list(recursive=False)
        assert [e.name for e in top] == ["a.txt", "a/", "ab/", "z.txt"]
        directory = top[1]
        assert (directory.size, directory.last_modified) == (0, None)
        assert names(storage, "a", recursive=False) == ["a/b.txt", "a/c/"]
        assert names(storage, "a/c", recursive=False) == ["a/c/d.txt", "a/c/e.txt"]

    @pytest.mark.parametrize(
        ("pattern", "expected"),
        [
            ("*.txt", ["a.txt", "z.txt"]),
            ("a/*.txt", ["a/b.txt"]),
            ("a/*/*.txt", ["a/c/d.txt", "a/c/e.txt"]),
            ("a/c/?.txt", ["a/c/d.txt", "a/c/e.txt"]),
            ("a/c/[d].txt", ["a/c/d.txt"]),
            ("a/c/[!d].txt", ["a/c/e.txt"]),
            ("**/*.txt", ["a.txt", "a/b.txt", "a/c/d.txt", "a/c/e.txt", "ab/x.txt", "z.txt"]),
            ("**/d.txt", ["a/c/d.txt"]),
            ("a/**", ["a/b.txt", "a/c/d.txt", "a/c/e.txt"]),
            ("a/**/e.txt", ["a/c/e.txt"]),
            ("a.txt", ["a.txt"]),
            ("nothing*", []),
        ],
    )
    def test_glob(self, storage: StorageBackend, pattern: str, expected: list[str]) -> None:
        _tree(storage)
        assert [entry.name for entry in storage.glob(pattern)] == expected

    def test_glob_double_star_matches_zero_segments(self, storage: StorageBackend) -> None:
        write(storage, "a.txt", b"top")
        write(storage, "x/y/a.txt", b"deep")
        assert [e.name for e in storage.glob("**/a.txt")] == ["a.txt", "x/y/a.txt"]

    def test_shared_instance_across_threads(self, storage: StorageBackend) -> None:
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                for round_ in range(3):
                    data = payload(200_000 + worker, seed=worker * 10 + round_)
                    path = f"threads/{worker}/{round_}.bin"
                    write(storage, path, data)
                    assert read(storage, path) == data
                    storage.copy(path, path + ".copy")
                    assert storage.stat(path + ".copy").size == len(data)
                    storage.delete(path + ".copy")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(names(storage, "threads")) == 24
