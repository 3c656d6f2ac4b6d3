"""Conditional writes on SFTPStorage against OpenSSH's sshd: create-only publishes with
``hardlink@openssh.com`` (one winner among threads and processes, the old file intact, no temp
file left), ``if_match`` refused before anything is sent, copy and move create-only, and a
connection cut during the conditional publish."""

from __future__ import annotations

import concurrent.futures
import io
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from keg_storage import (
    FileExistsInStorageError,
    StorageConnectionError,
    UnsupportedOperationError,
)
from keg_storage.backends.sftp import SFTPStorage
from tests.backends.test_sftp import read, temp_files
from tests.faults.proxy import FaultProxy
from tests.fixtures.backend_sftp import make_storage
from tests.servers.sshd import SSHServer

MiB = 1024 * 1024
SIZES = {"empty": 0, "small": 1000, "multipart": 12 * MiB + 5}
EXISTS = "a file exists at this path (backend SFTPStorage 'sftp', path {!r})"


def payload(size: int, seed: int) -> bytes:
    """``size`` bytes that differ between seeds (a 0-byte file is the same for all)."""
    block = seed.to_bytes(2, "big") * 32768
    return (block * (size // len(block) + 1))[:size]


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_create_only_writes_a_new_file_and_refuses_an_existing_one(
    backend_sftp: SFTPStorage, sftp_base_path: str, size: int
) -> None:
    data = payload(size, 1)
    backend_sftp.upload(io.BytesIO(data), "dir/new.bin", overwrite=False)
    assert Path(sftp_base_path, "dir", "new.bin").read_bytes() == data

    with pytest.raises(FileExistsInStorageError) as caught:
        backend_sftp.upload(io.BytesIO(payload(size, 2)), "dir/new.bin", overwrite=False)
    assert str(caught.value) == EXISTS.format("dir/new.bin")
    assert isinstance(caught.value, FileExistsError)

    source = Path(sftp_base_path, "local.bin")
    source.write_bytes(payload(size, 3))
    with pytest.raises(FileExistsInStorageError):
        backend_sftp.put(str(source), "dir/new.bin", overwrite=False)
    backend_sftp.put(str(source), "dir/put.bin", overwrite=False)

    assert Path(sftp_base_path, "dir", "new.bin").read_bytes() == data
    assert Path(sftp_base_path, "dir", "put.bin").read_bytes() == payload(size, 3)
    assert temp_files(sftp_base_path) == []


def test_writer_fails_at_open_when_the_file_exists(
    backend_sftp: SFTPStorage, sftp_base_path: str
) -> None:
    """The LSTAT sent with the OPEN tells at once (no extra round trip)."""
    backend_sftp.upload(io.BytesIO(b"old"), "doc.txt")
    with pytest.raises(FileExistsInStorageError) as caught:
        backend_sftp.open("doc.txt", "wb", overwrite=False)
    assert str(caught.value) == EXISTS.format("doc.txt")
    assert read(backend_sftp, "doc.txt") == b"old"
    assert temp_files(sftp_base_path) == []


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_file_created_after_open_wins_over_the_create_only_writer(
    backend_sftp: SFTPStorage, sftp_base_path: str, size: int
) -> None:
    """The server decides at publish: a file that appeared after ``open()`` stays as it is."""
    writer = backend_sftp.open("doc.bin", "wb", overwrite=False)
    writer.write(payload(size, 1))
    backend_sftp.upload(io.BytesIO(payload(size, 2) + b"first"), "doc.bin")
    with pytest.raises(FileExistsInStorageError) as caught:
        writer.close()
    assert str(caught.value) == EXISTS.format("doc.bin")
    assert Path(sftp_base_path, "doc.bin").read_bytes() == payload(size, 2) + b"first"
    assert temp_files(sftp_base_path) == []


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_sixteen_threads_racing_to_create_one_path(
    backend_sftp: SFTPStorage, sftp_base_path: str, size: int
) -> None:
    """Every writer has written its bytes before any publishes: the hardlink decides."""
    threads = 16
    ready = threading.Barrier(threads)

    def create(worker: int) -> bool:
        data = payload(size, worker) + worker.to_bytes(2, "big")
        writer = backend_sftp.open("race.bin", "wb", overwrite=False)
        writer.write(data)
        writer.flush()
        ready.wait(timeout=60)
        try:
            writer.close()
        except FileExistsInStorageError:
            return False
        return True

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        won = list(pool.map(create, range(threads)))
    assert won.count(True) == 1
    winner = won.index(True)
    stored = Path(sftp_base_path, "race.bin").read_bytes()
    assert stored == payload(size, winner) + winner.to_bytes(2, "big")
    assert temp_files(sftp_base_path) == []


def create_in_process(
    options: dict[str, Any], worker: int, size: int, ready: Any, results: Any
) -> None:
    """One racing process, with its own SFTPStorage: writes, waits for all, publishes."""
    port, key, known_hosts, base_path = options["server"]
    with SFTPStorage("127.0.0.1", "root", key, known_hosts, port=port, base_path=base_path) as s:
        writer = s.open("race.bin", "wb", overwrite=False)
        writer.write(payload(size, worker) + worker.to_bytes(2, "big"))
        writer.flush()
        ready.wait(timeout=60)
        try:
            writer.close()
        except FileExistsInStorageError:
            results.put((worker, False))
            return
        results.put((worker, True))


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_four_processes_racing_to_create_one_path(
    sftp_server: SSHServer, sftp_base_path: str, size: int
) -> None:
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(4), context.Queue()
    server = (sftp_server.port, str(sftp_server.client_key), str(sftp_server.known_hosts))
    options = {"server": (*server, sftp_base_path)}
    processes = [
        context.Process(target=create_in_process, args=(options, worker, size, ready, results))
        for worker in range(4)
    ]
    for process in processes:
        process.start()
    outcomes = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    winners = [worker for worker, won in outcomes.items() if won]
    assert len(outcomes) == 4 and len(winners) == 1
    stored = Path(sftp_base_path, "race.bin").read_bytes()
    assert stored == payload(size, winners[0]) + winners[0].to_bytes(2, "big")
    assert temp_files(sftp_base_path) == []


def test_if_match_is_refused_before_anything_is_sent(
    sftp_server: SSHServer, sftp_base_path: str
) -> None:
    message = (
        "compare-and-swap writes (if_match) are not supported (backend SFTPStorage 'sftp', "
        "path 'doc.txt')"
    )
    source = Path(sftp_base_path, "local.txt")
    source.write_bytes(b"new")
    with make_storage(sftp_server, sftp_base_path) as storage:
        assert not storage.capabilities.conditional_replace
        for write in (
            lambda: storage.open("doc.txt", "wb", if_match='"1-3"'),
            lambda: storage.upload(io.BytesIO(b"new"), "doc.txt", if_match='"1-3"'),
            lambda: storage.put(str(source), "doc.txt", if_match='"1-3"'),
        ):
            with pytest.raises(UnsupportedOperationError) as caught:
                write()
            assert str(caught.value) == message
        assert storage.pool_stats().connections_opened == 0  # nothing was sent at all
    assert sorted(os.listdir(sftp_base_path)) == ["local.txt"]


def test_create_only_without_the_hardlink_extension_is_refused_before_any_byte(
    sftp_server: SSHServer, sftp_base_path: str
) -> None:
    with make_storage(sftp_server, sftp_base_path, pool_size=1, sessions_per_connection=1) as s:
        with s.connection() as session:
            session.extensions.pop("hardlink@openssh.com")
        message = (
            "create-only writes (overwrite=False) need the server's hardlink@openssh.com "
            "extension, which it does not offer (backend SFTPStorage 'sftp', path {!r})"
        )
        with pytest.raises(UnsupportedOperationError) as caught:
            s.upload(io.BytesIO(b"new"), "doc.txt", overwrite=False)
        assert str(caught.value) == message.format("doc.txt")
        s.upload(io.BytesIO(b"src"), "src.txt")
        for operation in (s.copy, s.move):
            with pytest.raises(UnsupportedOperationError) as caught:
                operation("src.txt", "new.txt", overwrite=False)
            assert str(caught.value) == message.format("new.txt")
        assert s.capabilities.conditional_create  # the class's: OpenSSH has it
    assert sorted(os.listdir(sftp_base_path)) == ["src.txt"]


@pytest.mark.parametrize("streamed", [False, True], ids=["copy-data", "streamed"])
def test_copy_create_only(backend_sftp: SFTPStorage, sftp_base_path: str, streamed: bool) -> None:
    data = os.urandom(3 * MiB + 1)
    backend_sftp.upload(io.BytesIO(data), "src.bin")
    backend_sftp.upload(io.BytesIO(b"old"), "taken.bin")
    if streamed:
        with backend_sftp.connection() as session:
            session.extensions.pop("copy-data")
    with pytest.raises(FileExistsInStorageError) as caught:
        backend_sftp.copy("src.bin", "taken.bin", overwrite=False)
    assert str(caught.value) == EXISTS.format("taken.bin")
    backend_sftp.copy("src.bin", "new/copy.bin", overwrite=False)
    assert Path(sftp_base_path, "taken.bin").read_bytes() == b"old"
    assert Path(sftp_base_path, "new", "copy.bin").read_bytes() == data
    assert Path(sftp_base_path, "src.bin").read_bytes() == data
    assert temp_files(sftp_base_path) == []


def test_move_create_only(backend_sftp: SFTPStorage, sftp_base_path: str) -> None:
    backend_sftp.upload(io.BytesIO(b"source"), "a/src.txt")
    backend_sftp.upload(io.BytesIO(b"old"), "taken.txt")
    with pytest.raises(FileExistsInStorageError) as caught:
        backend_sftp.move("a/src.txt", "taken.txt", overwrite=False)
    assert str(caught.value) == EXISTS.format("taken.txt")
    assert Path(sftp_base_path, "a", "src.txt").read_bytes() == b"source"
    assert Path(sftp_base_path, "taken.txt").read_bytes() == b"old"

    backend_sftp.move("a/src.txt", "b/c/moved.txt", overwrite=False)  # into a new directory
    assert Path(sftp_base_path, "b", "c", "moved.txt").read_bytes() == b"source"
    assert not Path(sftp_base_path, "a").exists()  # the source is gone, its directory pruned
    assert sorted(e.name for e in backend_sftp.list()) == ["b/c/moved.txt", "taken.txt"]


def test_connection_cut_during_the_conditional_publish(
    sftp_server: SSHServer, sftp_base_path: str
) -> None:
    """Cut the server's answers a few bytes after every byte was written and acknowledged:
    at the close, at the hardlink (done on the server, its answer lost) or after. Whatever the
    server did, the path holds the writer's whole file or nothing, and no temp file stays."""
    data = os.urandom(2 * MiB + 7)
    outcomes = set()
    for cut_at in (1, 60, 120, 200, 400):
        key = f"doc-{cut_at}.bin"
        stored = Path(sftp_base_path, key)
        with (
            FaultProxy("127.0.0.1", sftp_server.port) as proxy,
            make_storage(sftp_server, sftp_base_path, port=proxy.port) as storage,
        ):
            writer = storage.open(key, "wb", overwrite=False)
            writer.write(data)
            writer.flush()
            proxy.cut_after(cut_at, "downstream")
            try:
                writer.close()
                outcomes.add("published")
            except StorageConnectionError:
                assert not proxy.armed
                outcomes.add("cut, published" if stored.exists() else "cut, nothing published")
            assert not stored.exists() or stored.read_bytes() == data
            assert temp_files(sftp_base_path) == []
            if stored.exists():  # its own file now: a create-only retry is refused
                with pytest.raises(FileExistsInStorageError):
                    storage.upload(io.BytesIO(b"other"), key, overwrite=False)
            else:
                storage.upload(io.BytesIO(data), key, overwrite=False)
            assert stored.read_bytes() == data
    # The cuts landed before the hardlink and between the hardlink and its answer.
    assert {"cut, published", "cut, nothing published"} <= outcomes, outcomes


def test_create_only_upload_is_not_restarted_once_its_publish_went_out(
    sftp_server: SSHServer, sftp_base_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer to the hardlink is lost: a restarted upload would find its own file and
    call it another's, so the connection error is raised instead (as with a plain write's
    lost answer), and the file is the upload's, whole, with no temp file."""
    data = os.urandom(MiB)
    with (
        FaultProxy("127.0.0.1", sftp_server.port) as proxy,
        make_storage(sftp_server, sftp_base_path, port=proxy.port) as storage,
    ):
        publish_new = storage.paths.publish_new

        def cut_its_answer(*args: Any) -> None:
            proxy.cut_after(1, "downstream")  # the request reaches the server, not its answer
            publish_new(*args)

        monkeypatch.setattr(storage.paths, "publish_new", cut_its_answer)
        with pytest.raises(StorageConnectionError):
            storage.upload(io.BytesIO(data), "doc.bin", overwrite=False)
        assert not proxy.armed
    assert Path(sftp_base_path, "doc.bin").read_bytes() == data
    assert temp_files(sftp_base_path) == []
