"""``keg_storage.sync`` between real stores: LocalFS on the disk, S3 on SeaweedFS, Azure on Azurite,
SFTP on sshd, and Memory; every pair checks the bytes stored, not only the counts."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keg_storage import (
    FileNotFoundInStorageError,
    LocalFSStorage,
    MemoryStorage,
    StorageBackend,
    sync,
)
from keg_storage.backends.sftp import SFTPStorage
from keg_storage.errors import InvalidPathError
from keg_storage.sync import SyncAction, SyncProgress, merge_listings

MiB = 1024 * 1024

TREE = {
    "a.txt": b"alpha",
    "empty": b"",
    "docs/b.txt": b"bravo" * 100,
    "docs/deeper/c.bin": bytes(range(256)) * 4096,  # 1 MiB
    "docs-x/d.txt": b"delta",  # sorts between docs/... and docs/... of other stores' orders
}

PAIRS = ["local-s3", "local-azure", "local-sftp", "s3-sftp", "memory-local", "local-memory"]


def backend(request: pytest.FixtureRequest, kind: str) -> StorageBackend:
    name = {"local": "localfs"}.get(kind, kind)
    return request.getfixturevalue(f"backend_{name}")  # type: ignore[no-any-return]


@pytest.fixture(params=PAIRS)
def pair(request: pytest.FixtureRequest) -> tuple[StorageBackend, StorageBackend]:
    src_kind, dst_kind = request.param.split("-")
    return backend(request, src_kind), backend(request, dst_kind)


def write(storage: StorageBackend, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        storage.upload(io.BytesIO(data), name)


def contents(storage: StorageBackend, path: str = "") -> dict[str, bytes]:
    """Every file under ``path`` with its bytes (names relative to ``path``)."""
    prefix = f"{path.strip('/')}/" if path.strip("/") else ""
    found = {}
    for entry in storage.list(path):
        with storage.open(entry.name, "rb") as source:
            found[entry.name[len(prefix) :]] = source.read()
    return found


def local_root(storage: StorageBackend) -> Path:
    assert isinstance(storage, LocalFSStorage)
    return storage.root


def temp_leftovers(storage: StorageBackend) -> list[str]:
    """Temp files a writer left at a LocalFS or SFTP destination (the listing hides them)."""
    if isinstance(storage, LocalFSStorage):
        root = storage.root
    elif type(storage).__name__ == "SFTPStorage":
        root = Path(storage.base_path)  # type: ignore[attr-defined]
    else:
        return []
    return [str(p) for p in root.rglob("*") if p.name.startswith(".keg-storage-")]


def test_first_sync_copies_everything_and_a_second_copies_nothing(
    pair: tuple[StorageBackend, StorageBackend],
) -> None:
    src, dst = pair
    write(src, TREE)
    seen: list[SyncProgress] = []

    result = sync(src, dst, progress=seen.append)

    assert result.ok, result.failures
    assert (result.copied, result.skipped, result.deleted) == (len(TREE), 0, 0)
    assert result.bytes == sum(map(len, TREE.values()))
    assert contents(dst) == TREE
    assert seen[-1] == SyncProgress(len(TREE), len(TREE), result.bytes, result.bytes)
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)
    assert str(result).startswith(f"{len(TREE)} copied, 0 skipped, 0 deleted, {result.bytes} bytes")

    again = sync(src, dst)
    assert (again.copied, again.skipped, again.bytes, again.actions) == (0, len(TREE), 0, [])
    assert temp_leftovers(dst) == []


def test_a_changed_file_is_copied_again(pair: tuple[StorageBackend, StorageBackend]) -> None:
    src, dst = pair
    write(src, TREE)
    sync(src, dst)
    time.sleep(1.1)  # S3, Azure and SFTP keep times in whole seconds
    write(src, {"a.txt": b"alpha, longer", "docs/b.txt": b"BRAVO" * 100})  # size; time only

    result = sync(src, dst)

    reasons = {action.name: action.reason for action in result.actions}
    assert reasons == {"a.txt": "size", "docs/b.txt": "modified"}
    assert result.copied == 2
    assert result.skipped == len(TREE) - 2
    assert contents(dst)["docs/b.txt"] == b"BRAVO" * 100
    assert sync(src, dst).copied == 0


def test_delete_removes_what_the_source_lacks(pair: tuple[StorageBackend, StorageBackend]) -> None:
    src, dst = pair
    write(src, TREE)
    write(dst, {"extra.txt": b"x", "docs/deeper/old.bin": b"old", "zz/last": b"z"})

    kept = sync(src, dst)
    assert kept.deleted == 0
    assert {"extra.txt", "zz/last"} <= set(contents(dst))

    result = sync(src, dst, delete=True)

    assert result.deleted == 3
    assert [a.name for a in result.actions if a.kind == "delete"] == [
        "docs/deeper/old.bin",
        "extra.txt",
        "zz/last",
    ]
    assert contents(dst) == TREE


def test_a_dry_run_changes_nothing_and_returns_the_plan(
    pair: tuple[StorageBackend, StorageBackend],
) -> None:
    src, dst = pair
    write(src, TREE)
    write(dst, {"a.txt": b"other content", "extra.txt": b"x"})

    result = sync(src, dst, delete=True, dry_run=True)

    assert result.dry_run
    assert contents(dst) == {"a.txt": b"other content", "extra.txt": b"x"}
    assert [str(action) for action in result.actions] == [
        "copy a.txt (size, 5 bytes)",
        "copy docs-x/d.txt (new, 5 bytes)",
        "copy docs/b.txt (new, 500 bytes)",
        f"copy docs/deeper/c.bin (new, {MiB} bytes)",
        "copy empty (new, 0 bytes)",
        "delete extra.txt (not at source, 1 bytes)",
    ]
    assert (result.copied, result.deleted, result.skipped) == (5, 1, 0)
    assert str(result) == f"would copy 5 ({MiB + 510} bytes), would delete 1, 0 skipped"


@pytest.mark.parametrize("dst_kind", ["s3", "azure", "sftp", "memory", "local"])
def test_checksum_sees_a_change_that_keeps_size_and_time(
    request: pytest.FixtureRequest, tmp_path: Path, dst_kind: str
) -> None:
    root = tmp_path / "source"
    root.mkdir()
    src = LocalFSStorage(root)
    dst = backend(request, dst_kind)
    write(src, {"same.txt": b"aaaa", "other.txt": b"bbbb"})
    sync(src, dst)
    changed = root / "same.txt"
    before = changed.stat()
    changed.write_bytes(b"AAAA")
    os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert sync(src, dst).copied == 0  # size and time cannot see it
    result = sync(src, dst, compare="checksum")

    assert [str(a) for a in result.actions] == ["copy same.txt (content, 4 bytes)"]
    assert (result.copied, result.skipped) == (1, 1)
    assert contents(dst) == {"other.txt": b"bbbb", "same.txt": b"AAAA"}
    assert sync(src, dst, compare="checksum").copied == 0


def test_the_destination_keeps_the_source_times(
    backend_localfs: LocalFSStorage, tmp_path: Path
) -> None:
    root = tmp_path / "source"
    root.mkdir()
    (root / "old.txt").write_bytes(b"old")
    os.utime(root / "old.txt", (1_000_000_000.25, 1_000_000_000.25))

    sync(LocalFSStorage(root), backend_localfs)

    assert (backend_localfs.root / "old.txt").stat().st_mtime == 1_000_000_000.25


def test_sftp_keeps_whole_seconds_and_object_stores_keep_mtime_metadata(
    request: pytest.FixtureRequest, tmp_path: Path, s3_client: Any, s3_bucket: str
) -> None:
    root = tmp_path / "source"
    root.mkdir()
    (root / "old.txt").write_bytes(b"old")
    os.utime(root / "old.txt", (1_000_000_000.25, 1_000_000_000.25))
    sftp, s3 = backend(request, "sftp"), backend(request, "s3")

    sync(LocalFSStorage(root), sftp)
    sync(LocalFSStorage(root), s3)

    assert (Path(sftp.base_path) / "old.txt").stat().st_mtime == 1_000_000_000  # type: ignore[attr-defined]
    head = s3_client.head_object(Bucket=s3_bucket, Key="old.txt")
    assert head["Metadata"] == {"mtime": "1000000000.250000"}  # rclone's form


def test_sftp_keeps_the_time_of_a_streamed_file_and_of_a_rewritten_one(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A file over the in-memory size streams to SFTP and is published with the source's time;
    a changed file is published again, whole, with its new time."""
    root = tmp_path / "source"
    root.mkdir()
    big = os.urandom(2 * MiB + 3)
    (root / "big.bin").write_bytes(big)
    os.utime(root / "big.bin", (1_000_000_000, 1_000_000_000))
    sftp = backend(request, "sftp")
    published = Path(sftp.base_path) / "big.bin"  # type: ignore[attr-defined]

    assert sync(LocalFSStorage(root), sftp).copied == 1
    assert (published.read_bytes(), published.stat().st_mtime) == (big, 1_000_000_000)

    (root / "big.bin").write_bytes(b"changed")
    os.utime(root / "big.bin", (1_100_000_000, 1_100_000_000))
    assert sync(LocalFSStorage(root), sftp).copied == 1
    assert (published.read_bytes(), published.stat().st_mtime) == (b"changed", 1_100_000_000)
    assert temp_leftovers(sftp) == []
    assert sync(LocalFSStorage(root), sftp).copied == 0


def dated_tree(root: Path, files: dict[str, bytes]) -> dict[str, int]:
    """Write ``files`` under ``root``, each with its own modification time; the times."""
    times = {}
    for number, (name, data) in enumerate(sorted(files.items())):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        times[name] = 1_000_000_000 + number
        os.utime(root / name, (times[name], times[name]))
    return times


def test_a_sync_into_sftp_copies_over_the_connection_its_listing_opened(
    backend_sftp: SFTPStorage, tmp_path: Path
) -> None:
    """The copies' sessions are opened ahead, as channels of the one SSH connection the
    destination's listing opened, not a connection per copying thread; the small files go in
    pipelined batches: every file is published whole, with its source's time."""
    files = {f"big/{n}.bin": os.urandom(2 * MiB + n) for n in range(4)}
    files.update({f"small/{n:03d}.txt": os.urandom(n) for n in range(150)})
    times = dated_tree(tmp_path / "source", files)

    result = sync(LocalFSStorage(tmp_path / "source"), backend_sftp, jobs=4)

    assert result.ok and result.copied == len(files)
    assert backend_sftp.pool_stats().connections_opened == 1
    assert contents(backend_sftp) == files
    base = Path(backend_sftp.base_path)
    assert {name: (base / name).stat().st_mtime for name in files} == times
    assert temp_leftovers(backend_sftp) == []
    assert sync(LocalFSStorage(tmp_path / "source"), backend_sftp).copied == 0


class VanishingSource(LocalFSStorage):
    """A LocalFS source whose file ``gone`` is deleted after the listing, as it is read."""

    gone = "small/007.txt"

    def download(self, path: Any, file_obj: Any, **kwargs: Any) -> None:
        if path == self.gone:
            (self.root / path).unlink()
        super().download(path, file_obj, **kwargs)


def test_a_small_file_that_fails_in_a_batch_fails_alone(
    backend_sftp: SFTPStorage, tmp_path: Path
) -> None:
    """A batched file the source lost after its listing fails with its error; the other
    files of its batch are published, whole and with their times, and nothing is left over."""
    files = {f"small/{n:03d}.txt": os.urandom(n + 1) for n in range(40)}
    times = dated_tree(tmp_path / "source", files)

    result = sync(VanishingSource(tmp_path / "source"), backend_sftp, jobs=2)

    assert [(f.action, f.name) for f in result.failures] == [("copy", VanishingSource.gone)]
    assert isinstance(result.failures[0].error, FileNotFoundInStorageError)
    assert result.copied == len(files) - 1
    del files[VanishingSource.gone]
    assert contents(backend_sftp) == files
    base = Path(backend_sftp.base_path)
    assert {name: (base / name).stat().st_mtime for name in files} == {
        name: times[name] for name in files
    }
    assert temp_leftovers(backend_sftp) == []


def test_one_failing_file_never_stops_the_others(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A name S3 and Azure cannot keep (``\\``), and a directory in the way on LocalFS and
    SFTP: each fails alone, with its error, while every other file is copied."""
    root = tmp_path / "source"
    root.mkdir()
    src = LocalFSStorage(root)
    write(src, TREE)
    write(src, {"back\\slash.txt": b"b"})
    results = {}
    for kind in ("s3", "azure", "local", "sftp"):
        dst = backend(request, kind)
        if kind in ("local", "sftp"):
            base = dst.root if kind == "local" else Path(dst.base_path)  # type: ignore[attr-defined]
            (base / "docs" / "b.txt").mkdir(parents=True)
        results[kind] = (sync(src, dst), dst)

    for kind, (result, dst) in results.items():
        failed = "back\\slash.txt" if kind in ("s3", "azure") else "docs/b.txt"
        assert [(f.action, f.name) for f in result.failures] == [("copy", failed)], kind
        assert result.copied == len(TREE), kind
        assert str(result).endswith(", 1 failed")
        stored = contents(dst)
        expected = {**TREE, "back\\slash.txt": b"b"}
        del expected[failed]
        assert stored == expected, kind
    s3_failure = results["s3"][0].failures[0].error
    assert isinstance(s3_failure, InvalidPathError)
    assert s3_failure.path == "back\\slash.txt"
    assert "cannot be kept in a name" in str(s3_failure)


def test_a_sync_stopped_by_its_progress_callback_leaves_whole_files_only(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A KeyboardInterrupt from the progress callback stops the sync at once: every file at the
    destination is whole, no temp file stays, and a second sync finishes the job."""
    root = tmp_path / "source"
    root.mkdir()
    src = LocalFSStorage(root)
    files = {f"big/{n}.bin": os.urandom(3 * MiB + n) for n in range(6)}
    files.update({f"small/{n}.txt": b"s" * n for n in range(20)})
    write(src, files)
    for kind in ("local", "sftp", "s3"):
        dst = backend(request, kind)

        def interrupt(progress: SyncProgress) -> None:
            if progress.files_done >= 1:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            sync(src, dst, progress=interrupt, jobs=3)

        partial = contents(dst)
        assert len(partial) < len(files), kind
        assert all(files[name] == data for name, data in partial.items()), kind
        assert temp_leftovers(dst) == [], kind
        result = sync(src, dst)
        assert result.ok and result.copied == len(files) - len(partial), kind
        assert contents(dst) == files, kind


def test_paths_on_each_side(backend_memory: MemoryStorage, backend_localfs: LocalFSStorage) -> None:
    write(backend_memory, {"photos/a.jpg": b"a", "photos/x/b.jpg": b"b", "photosx/c": b"c"})
    write(backend_localfs, {"backup/photos/old.jpg": b"o", "other/keep.txt": b"k"})

    result = sync(
        backend_memory, backend_localfs, path="photos", dst_path="backup/photos", delete=True
    )

    assert (result.copied, result.deleted) == (2, 1)
    assert contents(backend_localfs) == {
        "backup/photos/a.jpg": b"a",
        "backup/photos/x/b.jpg": b"b",
        "other/keep.txt": b"k",
    }


def test_merge_walks_two_sorted_streams_lazily() -> None:
    def entries(*names: str) -> Iterator[Any]:
        from keg_storage import ListEntry

        for name in names:
            yield ListEntry(name, None, 1)

    merged = merge_listings(entries("p/a", "p/c", "p/d"), "p/", entries("q/b", "q/c"), "q/")
    assert [(n, s is not None, d is not None) for n, s, d in merged] == [
        ("a", True, False),
        ("b", False, True),
        ("c", True, True),
        ("d", True, False),
    ]
    unsorted = merge_listings(entries("b", "a"), "", entries(), "")
    with pytest.raises(Exception, match="not sorted"):
        list(unsorted)


def test_bad_arguments_are_refused_before_any_listing(backend_memory: MemoryStorage) -> None:
    with pytest.raises(ValueError, match="compare must be one of size-mtime, checksum"):
        sync(backend_memory, backend_memory, compare="md5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jobs must be an int >= 1"):
        sync(backend_memory, backend_memory, jobs=0)
    with pytest.raises(InvalidPathError):
        sync(backend_memory, backend_memory, path="../up")


def test_sync_is_the_package_function_after_any_import() -> None:
    import keg_storage
    import keg_storage.cli_sync  # imports the module keg_storage.sync

    assert keg_storage.sync is sync
    assert callable(keg_storage.sync)
    assert SyncAction("copy", "a", 1, "new").kind == "copy"
