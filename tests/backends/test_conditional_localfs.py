"""LocalFS conditional writes on a real disk: create-only (``overwrite=False``) decided by the
kernel, compare-and-swap (``if_match``) under the directory's lock, raced by threads and by real
processes."""

from __future__ import annotations

import errno
import io
import multiprocessing
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from keg_storage import LocalFSStorage
from keg_storage.backends import filesystem_publish, publish
from keg_storage.backends.base import FILE_EXISTS, PRECONDITION_FAILED
from keg_storage.backends.conditions import Capabilities
from keg_storage.backends.publish import TEMP_PREFIX
from keg_storage.errors import (
    FileExistsInStorageError,
    PreconditionFailedError,
    UnsupportedOperationError,
)

SIZES = {"empty": 0, "small": 1000, "12MiB": 12 * 1024 * 1024}


@pytest.fixture
def storage(tmp_path: Path) -> LocalFSStorage:
    return LocalFSStorage(tmp_path)


@pytest.fixture(params=list(SIZES), ids=list(SIZES))
def size(request: pytest.FixtureRequest) -> int:
    return SIZES[request.param]


def content(size: int, tag: int) -> bytes:
    """``size`` bytes that differ for every ``tag``."""
    return (bytes([tag % 256]) * 4096 + os.urandom(4096))[:size] * (size // 8192 + 1)


def temp_files(root: Path) -> list[str]:
    return [str(path) for path in root.rglob(f"{TEMP_PREFIX}*")]


def test_capabilities() -> None:
    assert LocalFSStorage.capabilities == Capabilities(
        read_write=True,
        conditional_create=True,
        conditional_replace=True,
        server_side_copy=True,
        service_links=False,
        internal_links=True,
        multi_operation_links=True,
        metadata=False,
    )
    assert LocalFSStorage.supports_read_write


def create_only_writes(storage: LocalFSStorage, data: bytes, tmp_path: Path) -> dict[str, Callable]:
    local = tmp_path / "local.bin"
    local.write_bytes(data)
    storage.upload(io.BytesIO(data), "source/file.bin")

    def write_with_open() -> None:
        with storage.open("dir/file.bin", "wb", overwrite=False) as writer:
            writer.write(data)

    return {
        "put": lambda: storage.put(local, "dir/file.bin", overwrite=False),
        "upload": lambda: storage.upload(io.BytesIO(data), "dir/file.bin", overwrite=False),
        "open": write_with_open,
        "copy": lambda: storage.copy("source/file.bin", "dir/file.bin", overwrite=False),
        "move": lambda: storage.move("source/file.bin", "dir/file.bin", overwrite=False),
    }


@pytest.mark.parametrize("operation", ["put", "upload", "open", "copy", "move"])
def test_create_only_onto_an_existing_file_fails_and_keeps_it(
    storage: LocalFSStorage, tmp_path: Path, size: int, operation: str
) -> None:
    old, new = content(size, 1) + b"old", content(size, 2)
    storage.upload(io.BytesIO(old), "dir/file.bin")
    before = storage.stat("dir/file.bin")
    write = create_only_writes(storage, new, tmp_path)[operation]
    with pytest.raises(FileExistsInStorageError) as caught:
        write()
    assert (
        str(caught.value)
        == f"{FILE_EXISTS} (backend LocalFSStorage {storage.name!r}, path 'dir/file.bin')"
    )
    assert isinstance(caught.value, FileExistsError)
    assert (tmp_path / "dir/file.bin").read_bytes() == old
    assert storage.stat("dir/file.bin") == before
    assert (tmp_path / "source/file.bin").read_bytes() == new  # a refused move keeps its source
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("operation", ["put", "upload", "open", "copy", "move"])
def test_create_only_onto_a_free_path_publishes(
    storage: LocalFSStorage, tmp_path: Path, size: int, operation: str
) -> None:
    data = content(size, 3)
    create_only_writes(storage, data, tmp_path)[operation]()
    assert (tmp_path / "dir/file.bin").read_bytes() == data
    assert (tmp_path / "source/file.bin").exists() == (operation != "move")
    assert temp_files(tmp_path) == []


def test_create_only_writer_loses_to_a_file_created_while_it_writes(
    storage: LocalFSStorage, tmp_path: Path
) -> None:
    writer = storage.open("late.txt", "wb", overwrite=False)
    writer.write(b"mine")
    (tmp_path / "late.txt").write_bytes(b"theirs")  # even a writer that bypasses keg_storage
    with pytest.raises(FileExistsInStorageError, match=FILE_EXISTS):
        writer.close()
    assert (tmp_path / "late.txt").read_bytes() == b"theirs"
    assert temp_files(tmp_path) == []


def test_create_only_through_link_where_renameat2_is_missing(
    storage: LocalFSStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filesystem_publish, "_renameat2", None)
    monkeypatch.setattr(publish, "_UNNAMED", 0)  # a temp file with a name is renamed
    storage.upload(io.BytesIO(b"first"), "a.txt", overwrite=False)
    with pytest.raises(FileExistsInStorageError):
        storage.upload(io.BytesIO(b"second"), "a.txt", overwrite=False)
    storage.move("a.txt", "b.txt", overwrite=False)
    assert (tmp_path / "b.txt").read_bytes() == b"first"
    assert sorted(os.listdir(tmp_path)) == ["b.txt"]
    assert os.stat(tmp_path / "b.txt").st_nlink == 1


def race_threads(storage: LocalFSStorage, size: int) -> dict[int, bytes]:
    """16 threads create ``race.bin`` at once; the payloads of those that succeeded."""
    barrier = threading.Barrier(16)
    winners: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def create(tag: int) -> None:
        data = content(size, tag) + bytes([tag])
        barrier.wait()
        try:
            storage.upload(io.BytesIO(data), "race.bin", overwrite=False)
        except FileExistsInStorageError:
            return
        except BaseException as exc:
            errors.append(exc)
            return
        winners[tag] = data

    threads = [threading.Thread(target=create, args=(tag,)) for tag in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return winners


def test_16_threads_race_to_create_and_exactly_one_wins(
    storage: LocalFSStorage, tmp_path: Path, size: int
) -> None:
    winners = race_threads(storage, size)
    assert len(winners) == 1
    assert (tmp_path / "race.bin").read_bytes() == next(iter(winners.values()))
    assert temp_files(tmp_path) == []


def create_in_process(root: str, tag: int, size: int, barrier: object, results: object) -> None:
    """One of the racing processes: reports (tag, won) on ``results``."""
    storage = LocalFSStorage(root)
    data = content(size, tag) + bytes([tag])
    barrier.wait()  # type: ignore[attr-defined]
    try:
        storage.upload(io.BytesIO(data), "race.bin", overwrite=False)
    except FileExistsInStorageError:
        results.put((tag, False))  # type: ignore[attr-defined]
        return
    results.put((tag, True))  # type: ignore[attr-defined]
    with open(os.path.join(root, f"winner-{tag}"), "wb") as record:
        record.write(data)


@pytest.mark.parametrize("size", [0, 1000, 12 * 1024 * 1024], ids=list(SIZES))
def test_4_processes_race_to_create_and_exactly_one_wins(tmp_path: Path, size: int) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    root = tmp_path / "store"
    root.mkdir()
    processes = [
        context.Process(target=create_in_process, args=(str(root), tag, size, barrier, results))
        for tag in range(4)
    ]
    for process in processes:
        process.start()
    outcomes = dict(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    winners = [tag for tag, won in outcomes.items() if won]
    assert len(winners) == 1 and len(outcomes) == 4
    assert (root / "race.bin").read_bytes() == (root / f"winner-{winners[0]}").read_bytes()
    assert temp_files(root) == []


def test_if_match_with_the_current_etag_replaces(
    storage: LocalFSStorage, tmp_path: Path, size: int
) -> None:
    storage.upload(io.BytesIO(b"old"), "cas.bin")
    etag = storage.stat("cas.bin").etag
    data = content(size, 4)
    storage.upload(io.BytesIO(data), "cas.bin", if_match=etag)
    assert (tmp_path / "cas.bin").read_bytes() == data
    assert storage.stat("cas.bin").etag != etag
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("operation", ["put", "upload", "open"])
def test_if_match_with_a_stale_etag_raises_and_keeps_the_file(
    storage: LocalFSStorage, tmp_path: Path, size: int, operation: str
) -> None:
    storage.upload(io.BytesIO(b"v1"), "cas.bin")
    stale = storage.stat("cas.bin").etag
    storage.upload(io.BytesIO(b"v2"), "cas.bin")  # same size, same clock tick maybe
    current = storage.stat("cas.bin")
    assert current.etag != stale
    data = content(size, 5)
    local = tmp_path / "local.bin"
    local.write_bytes(data)

    def write_with_open() -> None:
        with storage.open("cas.bin", "wb", if_match=stale) as writer:
            writer.write(data)

    write = {
        "put": lambda: storage.put(local, "cas.bin", if_match=stale),
        "upload": lambda: storage.upload(io.BytesIO(data), "cas.bin", if_match=stale),
        "open": write_with_open,
    }[operation]
    with pytest.raises(PreconditionFailedError) as caught:
        write()
    assert str(caught.value) == (
        f"{PRECONDITION_FAILED} (backend LocalFSStorage {storage.name!r}, path 'cas.bin')"
    )
    assert (tmp_path / "cas.bin").read_bytes() == b"v2"
    assert storage.stat("cas.bin") == current
    assert temp_files(tmp_path) == []


def test_if_match_loses_to_a_write_while_it_writes(storage: LocalFSStorage, tmp_path: Path) -> None:
    storage.upload(io.BytesIO(b"v1"), "cas.bin")
    writer = storage.open("cas.bin", "wb", if_match=storage.stat("cas.bin").etag)
    writer.write(b"mine")
    storage.upload(io.BytesIO(b"v2"), "cas.bin")
    with pytest.raises(PreconditionFailedError):
        writer.close()
    assert (tmp_path / "cas.bin").read_bytes() == b"v2"
    assert temp_files(tmp_path) == []


def test_if_match_on_a_missing_file_raises(storage: LocalFSStorage, tmp_path: Path) -> None:
    with pytest.raises(PreconditionFailedError, match=PRECONDITION_FAILED):
        storage.upload(io.BytesIO(b"x"), "missing.bin", if_match='"1-1"')
    storage.upload(io.BytesIO(b"v1"), "gone.bin")
    writer = storage.open("gone.bin", "wb", if_match=storage.stat("gone.bin").etag)
    writer.write(b"x")
    storage.delete("gone.bin")
    with pytest.raises(PreconditionFailedError):
        writer.close()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("how", ["open", "upload", "put"])
def test_a_refused_write_into_new_directories_leaves_none(
    storage: LocalFSStorage, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, how: str
) -> None:
    """The directories a write made for its file go when its condition refuses it (here at
    once: ``if_match`` on a missing file), as on an object store."""
    local = tmp_path_factory.mktemp("local") / "local.bin"
    local.write_bytes(b"x")
    with pytest.raises(PreconditionFailedError):
        if how == "open":
            storage.open("a/b/new.bin", "wb", if_match='"1-1"')
        elif how == "upload":
            storage.upload(io.BytesIO(b"x"), "a/b/new.bin", if_match='"1-1"')
        else:
            storage.put(str(local), "a/b/new.bin", if_match='"1-1"')
    assert os.listdir(tmp_path) == []


def test_16_threads_incrementing_with_if_match_lose_no_update(
    storage: LocalFSStorage, tmp_path: Path
) -> None:
    storage.upload(io.BytesIO(b"0"), "counter")
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def increment_10_times() -> None:
        barrier.wait()
        try:
            for _ in range(10):
                while True:
                    etag = storage.stat("counter").etag
                    value = int(storage.open("counter").read())
                    try:
                        storage.upload(io.BytesIO(b"%d" % (value + 1)), "counter", if_match=etag)
                    except PreconditionFailedError:
                        continue
                    break
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=increment_10_times) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (tmp_path / "counter").read_bytes() == b"160"
    assert temp_files(tmp_path) == []


def test_etags_of_one_path_never_repeat(storage: LocalFSStorage) -> None:
    etags = set()
    for _ in range(50):
        storage.upload(io.BytesIO(b"same size"), "f.txt")
        etags.add(storage.stat("f.txt").etag)
    assert len(etags) == 50


def test_without_flock_plain_writes_go_on_and_if_match_is_refused(
    storage: LocalFSStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NFS refuses flock on a read-only descriptor (EBADF); no local file system does, so the
    refusal is simulated."""

    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    storage.upload(io.BytesIO(b"v1"), "f.txt")
    etag = storage.stat("f.txt").etag
    monkeypatch.setattr(filesystem_publish.fcntl, "flock", no_flock)
    storage.upload(io.BytesIO(b"v2"), "f.txt")
    with pytest.raises(FileExistsInStorageError):
        storage.upload(io.BytesIO(b"v3"), "f.txt", overwrite=False)
    with pytest.raises(UnsupportedOperationError, match="need flock") as caught:
        storage.upload(io.BytesIO(b"v3"), "f.txt", if_match=storage.stat("f.txt").etag)
    assert "f.txt" in str(caught.value)
    assert etag != storage.stat("f.txt").etag
    assert (tmp_path / "f.txt").read_bytes() == b"v2"
    assert temp_files(tmp_path) == []


def test_a_new_version_gets_a_later_mtime_than_the_one_it_replaces(
    storage: LocalFSStorage, tmp_path: Path
) -> None:
    """As when both are written in one tick of a coarse file system clock: without the later
    time the two versions would have one ETag, and an if_match of the first would match."""
    storage.upload(io.BytesIO(b"v1"), "f.txt")
    future = os.stat(tmp_path / "f.txt").st_mtime_ns + 10**12
    os.utime(tmp_path / "f.txt", ns=(future, future))
    stale = storage.stat("f.txt").etag
    storage.upload(io.BytesIO(b"v2"), "f.txt")
    assert os.stat(tmp_path / "f.txt").st_mtime_ns == future + 1
    with pytest.raises(PreconditionFailedError):
        storage.upload(io.BytesIO(b"v3"), "f.txt", if_match=stale)
    assert (tmp_path / "f.txt").read_bytes() == b"v2"


def test_moves_in_opposite_directions_never_deadlock(
    storage: LocalFSStorage, tmp_path: Path
) -> None:
    """Each move locks both directories; taken in one order, two moves cannot wait on each
    other."""
    for index in range(4):
        storage.upload(io.BytesIO(b"x%d" % index), f"x/{index}")
        storage.upload(io.BytesIO(b"y%d" % index), f"y/{index}")
    storage.upload(io.BytesIO(b"keep"), "x/keep")  # keeps x/ and y/ from being pruned
    storage.upload(io.BytesIO(b"keep"), "y/keep")

    def shuttle(source: str, target: str, index: int) -> None:
        for _ in range(50):
            storage.move(f"{source}/{index}", f"{target}/{index}.moved")
            storage.move(f"{target}/{index}.moved", f"{source}/{index}", overwrite=False)

    threads = [
        threading.Thread(target=shuttle, args=(source, target, index), daemon=True)
        for index in range(4)
        for source, target in (("x", "y"), ("y", "x"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert sorted(entry.name for entry in storage.list()) == sorted(
        [f"{side}/{index}" for side in "xy" for index in range(4)] + ["x/keep", "y/keep"]
    )
    assert (tmp_path / "x/0").read_bytes() == b"x0"
    assert temp_files(tmp_path) == []
