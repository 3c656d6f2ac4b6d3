"""SFTP ``upload_many`` of small files, pipelined in batches on one session each
(keg_storage/backends/sftp_bulk.py), against OpenSSH's sshd: each file keeps its own result and
atomic publish whatever happens to the others, to the connection or to the server."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from keg_storage import InvalidPathError, StorageConnectionError, StorageError
from keg_storage.backends.bulk import TransferResult
from keg_storage.backends.sftp import SFTPStorage
from tests.faults.proxy import FaultProxy
from tests.fixtures.backend_sftp import make_storage
from tests.servers.sshd import SSHServer


def local_files(directory: Path, count: int, size: int = 4096) -> list[tuple[Path, bytes]]:
    files = []
    for number in range(count):
        data = os.urandom(size + number)
        path = directory / f"f{number:03}.bin"
        path.write_bytes(data)
        files.append((path, data))
    return files


def temp_files(directory: str) -> list[str]:
    return [name for _, _, files in os.walk(directory) for name in files if name.startswith(".keg")]


@pytest.fixture
def no_single_puts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small files must go in batches: the one-file path fails the test if used."""

    def single_put(*args: object, **kwargs: object) -> None:
        raise AssertionError("a small file went through _put, not a batch")

    monkeypatch.setattr(SFTPStorage, "_put", single_put)


@pytest.fixture
def outside(sftp_server: SSHServer, sftp_base_path: str) -> Iterator[Path]:
    """A directory outside base_path, reached from it by the symlinks ``out`` and ``out.txt``."""
    directory = Path(tempfile.mkdtemp(dir=sftp_server.data_dir, prefix="outside-"))
    (directory / "secret.txt").write_bytes(b"secret")
    os.symlink(directory, Path(sftp_base_path, "out"))
    os.symlink(directory / "secret.txt", Path(sftp_base_path, "out.txt"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.usefixtures("no_single_puts")
def test_each_file_of_a_batch_gets_its_own_result(
    backend_sftp: SFTPStorage, sftp_base_path: str, outside: Path, tmp_path: Path
) -> None:
    """Refusals by the confinement check and by the server fail their file only; new
    directories are created; nothing of a failed file stays, not even its temp file."""
    files = local_files(tmp_path, 30)
    Path(sftp_base_path, "taken").mkdir()  # a directory where a file is to go
    pairs = [(local, f"new/deep/{local.name}") for local, _ in files]
    refused = {3: "out/x.bin", 9: "out.txt", 17: "taken"}
    for index, key in refused.items():
        pairs[index] = (files[index][0], key)
    results = backend_sftp.upload_many(pairs, max_concurrency=8)
    for index, key in refused.items():
        error = results[index].error
        assert isinstance(error, StorageError) and error.path == key, (key, error)
        assert "SFTPStorage 'sftp'" in str(error)
    assert isinstance(results[3].error, InvalidPathError)
    assert isinstance(results[9].error, InvalidPathError)
    for index, (local, data) in enumerate(files):
        if index not in refused:
            assert results[index] == TransferResult(str(local), pairs[index][1], len(data))
            assert Path(sftp_base_path, pairs[index][1]).read_bytes() == data
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert Path(sftp_base_path, "taken").is_dir()
    assert temp_files(sftp_base_path) == []


@pytest.mark.usefixtures("no_single_puts")
def test_a_progress_callback_that_raises_stops_a_batch_without_leftovers(
    backend_sftp: SFTPStorage, sftp_base_path: str, tmp_path: Path
) -> None:
    files = local_files(tmp_path, 200)

    def interrupt(count: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backend_sftp.upload_many(
            [(local, f"int/{local.name}") for local, _ in files], progress=interrupt
        )
    contents = {local.name: data for local, data in files}
    stored = list(Path(sftp_base_path).rglob("*.bin"))
    assert len(stored) < len(files)
    for path in stored:
        assert path.read_bytes() == contents[path.name]
    assert temp_files(sftp_base_path) == []


@pytest.fixture
def proxied(
    sftp_server: SSHServer, sftp_base_path: str
) -> Iterator[tuple[SFTPStorage, FaultProxy]]:
    with (
        FaultProxy("127.0.0.1", sftp_server.port) as proxy,
        make_storage(sftp_server, sftp_base_path, port=proxy.port) as storage,
    ):
        yield storage, proxy


def test_a_batch_cut_off_goes_again_on_a_new_connection(
    proxied: tuple[SFTPStorage, FaultProxy],
    sftp_base_path: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The connection reset while the files' bytes go up: the files not yet published are
    sent again, once each in the progress, and every one ends whole, with no temp file left."""
    storage, proxy = proxied
    files = local_files(tmp_path, 60, size=16 * 1024)
    storage.exists("warm")  # the connection's handshake is behind: the cut falls in the batch
    proxy.cut_after(300 * 1024, "upstream")
    caplog.set_level(logging.WARNING, "keg_storage.retry")
    progress: list[int] = []
    results = storage.upload_many(
        [(local, f"cut/{local.name}") for local, _ in files],
        max_concurrency=2,  # one batch: on the calling thread, one session
        progress=progress.append,
    )
    assert not proxy.armed
    assert [r.error for r in results] == [None] * len(files)
    for local, data in files:
        assert Path(sftp_base_path, "cut", local.name).read_bytes() == data
    assert progress == sorted(progress) and progress[-1] == sum(len(d) for _, d in files)
    retries = [r.getMessage() for r in caplog.records if r.name == "keg_storage.retry"]
    assert len(retries) == 1 and "upload_many" in retries[0], retries
    assert temp_files(sftp_base_path) == []


def test_an_unreachable_server_gives_each_file_its_error(
    proxied: tuple[SFTPStorage, FaultProxy], tmp_path: Path
) -> None:
    storage, proxy = proxied
    proxy.refuse_new = True
    files = local_files(tmp_path, 70)
    pairs = [(local, f"dead/{local.name}") for local, _ in files]
    results = storage.upload_many(pairs, max_concurrency=4)
    for result, (_, key) in zip(results, pairs, strict=True):
        assert isinstance(result.error, StorageConnectionError)
        assert result.error.path == key and result.bytes == 0
        assert f"127.0.0.1:{proxy.port}" in str(result.error)
