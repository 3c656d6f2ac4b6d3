"""Bulk operations: ``delete_many``, ``upload_many``, ``download_many``."""

from __future__ import annotations

from pathlib import Path

import pytest

from keg_storage import (
    FileExistsInStorageError,
    FileNotFoundInStorageError,
    InvalidPathError,
    StorageBackend,
    UnsupportedOperationError,
)
from keg_storage.backends.bulk import DeleteResult, TransferResult

from .helpers import BackendCases, names, payload, read, write
from .operations import ProgressLog


def _local_files(directory: Path, count: int, size: int = 4096) -> list[tuple[Path, bytes]]:
    """``count`` local files of about ``size`` bytes (each a different size and content)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for number in range(count):
        data = payload(size + number, seed=number)
        local = directory / f"f{number:04}.bin"
        local.write_bytes(data)
        files.append((local, data))
    return files


class BulkCases(BackendCases):
    """``delete_many``, ``upload_many`` and ``download_many``: a result per item, in order;
    one failing item never stops the others; each file done whole or not at all."""

    def bulk_count(self, storage: StorageBackend) -> int:
        """How many files the ``delete_many`` case deletes: enough to cross the service's
        batch size where the binding knows it (override it to say so); 120 by default."""
        return 120

    def test_delete_many_deletes_every_file_and_reports_each(
        self, storage: StorageBackend, tmp_path: Path
    ) -> None:
        count = self.bulk_count(storage)
        files = _local_files(tmp_path / "src", count, size=16)
        keys = [f"d{number % 3}/{local.name}" for number, (local, _) in enumerate(files)]
        assert all(r.ok for r in storage.upload_many(zip((f for f, _ in files), keys, strict=True)))
        write(storage, "kept/file.txt", b"kept")
        paths = [*keys, "never/existed.txt", keys[0], "/" + keys[1]]
        results = storage.delete_many(paths)
        assert results == [DeleteResult(path) for path in paths]
        assert names(storage) == ["kept/file.txt"]
        assert names(storage, recursive=False) == ["kept/"]

    def test_delete_many_reports_invalid_paths_and_deletes_the_others(
        self, storage: StorageBackend
    ) -> None:
        for path in ("a.txt", "dir/b.txt", "dir/c.txt"):
            write(storage, path, b"x")
        results = storage.delete_many(["a.txt", "../outside.txt", "dir/b.txt", "dir/", ""])
        assert [result.path for result in results] == [
            "a.txt",
            "../outside.txt",
            "dir/b.txt",
            "dir/",
            "",
        ]
        assert [result.ok for result in results] == [True, False, True, False, False]
        for result in results[1], results[3], results[4]:
            assert isinstance(result.error, InvalidPathError)
            assert result.error.path == result.path
            assert result.error.backend is not None and storage.name in result.error.backend
        assert names(storage) == ["dir/c.txt"]

    def test_delete_many_of_nothing_and_of_a_directory(self, storage: StorageBackend) -> None:
        write(storage, "dir/file.txt", b"x")
        assert storage.delete_many([]) == []
        assert storage.delete_many(iter(["dir"])) == [DeleteResult("dir")]
        assert names(storage) == ["dir/file.txt"]
        with pytest.raises(TypeError, match="not a single str"):
            storage.delete_many("dir/file.txt")
        assert names(storage) == ["dir/file.txt"]

    def test_upload_many_reports_each_file_and_the_total_progress(
        self, storage: StorageBackend, tmp_path: Path
    ) -> None:
        files = _local_files(tmp_path, 40)
        pairs: list[tuple[str | Path, str]] = [(local, f"up/{local.name}") for local, _ in files]
        missing = tmp_path / "missing.bin"
        pairs.insert(7, (missing, "up/missing.bin"))
        pairs.insert(20, (files[0][0], "up/../bad.bin"))
        log = ProgressLog()
        results = storage.upload_many(pairs, max_concurrency=8, progress=log)
        assert [(r.source, r.destination) for r in results] == [(str(s), d) for s, d in pairs]
        failed = [results.pop(20), results.pop(7)]
        assert isinstance(failed[0].error, InvalidPathError)
        assert failed[0].error.path == "up/../bad.bin"
        assert isinstance(failed[1].error, FileNotFoundError)
        assert failed[1].error.filename == str(missing)
        assert [r.bytes for r in failed] == [0, 0]
        assert results == [
            TransferResult(str(local), f"up/{local.name}", len(data)) for local, data in files
        ]
        log.check(sum(len(data) for _, data in files))
        assert names(storage) == [f"up/{local.name}" for local, _ in files]
        for local, data in files[::7]:
            assert read(storage, f"up/{local.name}") == data
        assert self.leftovers(storage) == []

    def test_download_many_reports_each_file_and_the_total_progress(
        self, storage: StorageBackend, tmp_path: Path
    ) -> None:
        files = _local_files(tmp_path / "src", 30)
        assert all(r.ok for r in storage.upload_many([(f, f"down/{f.name}") for f, _ in files]))
        target = tmp_path / "target"
        target.mkdir()
        (target / "missing.bin").write_bytes(b"previous")
        pairs = [(f"down/{local.name}", target / local.name) for local, _ in files]
        pairs.insert(3, ("down/missing.bin", target / "missing.bin"))
        log = ProgressLog()
        results = storage.download_many(pairs, max_concurrency=4, progress=log)
        failed = results.pop(3)
        assert isinstance(failed.error, FileNotFoundInStorageError)
        assert failed.error.path == "down/missing.bin"
        assert (target / "missing.bin").read_bytes() == b"previous"
        assert results == [
            TransferResult(f"down/{local.name}", str(target / local.name), len(data))
            for local, data in files
        ]
        log.check(sum(len(data) for _, data in files))
        for local, data in files:
            assert (target / local.name).read_bytes() == data
        assert sorted(p.name for p in target.iterdir()) == sorted(
            [local.name for local, _ in files] + ["missing.bin"]
        )

    def test_upload_many_without_overwrite_keeps_existing_files(
        self, storage: StorageBackend, tmp_path: Path
    ) -> None:
        files = _local_files(tmp_path, 5)
        write(storage, "new/f0002.bin", b"first")
        results = storage.upload_many(
            [(local, f"new/{local.name}") for local, _ in files], overwrite=False
        )
        if not storage.capabilities.conditional_create:
            assert all(isinstance(r.error, UnsupportedOperationError) for r in results)
            return
        assert isinstance(results[2].error, FileExistsInStorageError)
        assert [r.ok for r in results] == [True, True, False, True, True]
        assert read(storage, "new/f0002.bin") == b"first"
        assert read(storage, "new/f0004.bin") == files[4][1]

    def test_empty_files_report_progress_zero_once(
        self, storage: StorageBackend, tmp_path: Path
    ) -> None:
        empty = tmp_path / "empty.bin"
        empty.write_bytes(b"")
        log = ProgressLog()
        results = storage.upload_many([(empty, "e1"), (empty, "e2")], progress=log)
        assert results == [TransferResult(str(empty), "e1"), TransferResult(str(empty), "e2")]
        assert log.values == [0]
        assert read(storage, "e2") == b""
        log = ProgressLog()
        assert storage.upload_many([], progress=log) == []
        assert log.values == [0]

    def test_upload_many_one_at_a_time_reports_and_stops_on_the_calling_thread(
        self, storage: StorageBackend, tmp_path: Path
    ) -> None:
        """With ``max_concurrency=1`` the files go one after the other: a file that fails gets
        its error and the others are stored; a progress callback that raises stops the run
        with its own exception, every file whole or absent, no temp state left."""
        files = _local_files(tmp_path, 5, size=64 * 1024)
        pairs: list[tuple[Path, str]] = [(local, f"one/{local.name}") for local, _ in files]
        pairs.insert(1, (tmp_path / "missing.bin", "one/missing.bin"))
        log = ProgressLog()
        results = storage.upload_many(pairs, max_concurrency=1, progress=log)
        assert [r.ok for r in results] == [True, False, True, True, True, True]
        assert isinstance(results[1].error, FileNotFoundError)
        log.check(sum(len(data) for _, data in files))
        assert names(storage) == [f"one/{local.name}" for local, _ in files]

        class Stop(Exception):
            pass

        def stop_in_the_third_file(count: int) -> None:
            if count > len(files[0][1]) + len(files[1][1]):
                raise Stop

        with pytest.raises(Stop):
            storage.upload_many(
                [(local, f"two/{local.name}") for local, _ in files],
                max_concurrency=1,
                progress=stop_in_the_third_file,
            )
        # The third file is absent or whole (its last chunk may have been reported after it was
        # published); no later one started.
        stored = [name for name in names(storage) if name.startswith("two/")]
        assert stored[:2] == [f"two/{local.name}" for local, _ in files[:2]]
        assert len(stored) <= 3
        for (_, data), name in zip(files, stored, strict=False):
            assert read(storage, name) == data
        assert self.leftovers(storage) == []

    def test_interrupted_upload_many_stops_and_leaves_no_temp_state(
        self, storage: StorageBackend, tmp_path: Path
    ) -> None:
        """A KeyboardInterrupt on the calling thread (raised here by the progress callback,
        which runs there) stops the workers at their next chunk; every file is whole or
        absent, and no temp file or multipart upload stays."""
        files = _local_files(tmp_path, 24, size=512 * 1024)

        def interrupt(count: int) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            storage.upload_many(
                [(local, f"int/{local.name}") for local, _ in files],
                max_concurrency=4,
                progress=interrupt,
            )
        stored = names(storage)
        assert len(stored) < len(files)
        contents = {f"int/{local.name}": data for local, data in files}
        for name in stored:
            assert read(storage, name) == contents[name]
        assert self.leftovers(storage) == []
