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

from keg_storage import (
    FileNotFoundInStorageError,
    InvalidPathError,
    StorageConnectionError,
    StorageError,
)
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
    refused = {3: "out/x.bin", 4: "out/y.bin", 9: "out.txt", 17: "taken"}
    for index, key in refused.items():
        pairs[index] = (files[index][0], key)
    results = backend_sftp.upload_many(pairs, max_concurrency=8)
    for index, key in refused.items():
        error = results[index].error
        assert isinstance(error, StorageError) and error.path == key, (key, error)
        assert "SFTPStorage 'sftp'" in str(error)
    for index in 3, 4, 9:
        assert isinstance(results[index].error, InvalidPathError)
    for index, (local, data) in enumerate(files):
        if index not in refused:
            assert results[index] == TransferResult(str(local), pairs[index][1], len(data))
            assert Path(sftp_base_path, pairs[index][1]).read_bytes() == data
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert Path(sftp_base_path, "taken").is_dir()
    assert temp_files(sftp_base_path) == []


@pytest.mark.usefixtures("no_single_puts")
@pytest.mark.parametrize("count", [200, 30], ids=["batches in workers", "one batch here"])
def test_a_progress_callback_that_raises_stops_a_batch_without_leftovers(
    backend_sftp: SFTPStorage, sftp_base_path: str, tmp_path: Path, count: int
) -> None:
    """On the workers the callback's exception reaches a batch as a cancellation; a single
    batch runs on the calling thread, where the KeyboardInterrupt itself goes through it."""
    files = local_files(tmp_path, count)

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


def test_a_batch_cut_off_goes_again_on_a_new_connection(
    sftp_proxied: tuple[SFTPStorage, FaultProxy],
    sftp_base_path: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The connection reset while the files' bytes go up: the files not yet published are
    sent again, once each in the progress, and every one ends whole, with no temp file left."""
    storage, proxy = sftp_proxied
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


def test_bulk_transfers_of_a_new_storage_share_one_connection(
    sftp_server: SSHServer, sftp_base_path: str, tmp_path: Path
) -> None:
    """With 8 jobs and nothing open yet, ``upload_many`` and ``download_many`` run over one
    SSH connection (its sessions opened ahead as channels), not a connection per thread."""
    files = local_files(tmp_path, 200)
    pairs = [(local, f"one/{local.name}") for local, _ in files]
    with make_storage(sftp_server, sftp_base_path) as storage:
        results = storage.upload_many(pairs, max_concurrency=8)
        assert [r.error for r in results] == [None] * len(pairs)
        assert storage.pool_stats().connections_opened == 1
    for local, data in files:
        assert Path(sftp_base_path, "one", local.name).read_bytes() == data
    back = tmp_path / "back"
    back.mkdir()
    with make_storage(sftp_server, sftp_base_path) as storage:
        results = storage.download_many([(k, back / p.name) for p, k in pairs], max_concurrency=8)
        assert [r.error for r in results] == [None] * len(pairs)
        assert storage.pool_stats().connections_opened == 1
    assert {p.name: p.read_bytes() for p in back.iterdir()} == {p.name: d for p, d in files}


def test_an_unreachable_server_gives_each_file_its_error(
    sftp_proxied: tuple[SFTPStorage, FaultProxy], tmp_path: Path
) -> None:
    storage, proxy = sftp_proxied
    proxy.refuse_new = True
    files = local_files(tmp_path, 70)
    pairs = [(local, f"dead/{local.name}") for local, _ in files]
    results = storage.upload_many(pairs, max_concurrency=4)
    for result, (_, key) in zip(results, pairs, strict=True):
        assert isinstance(result.error, StorageConnectionError)
        assert result.error.path == key and result.bytes == 0
        assert f"127.0.0.1:{proxy.port}" in str(result.error)


def test_downloads_in_a_batch_each_get_their_result(
    backend_sftp: SFTPStorage,
    sftp_base_path: str,
    outside: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Small files come in the batch; a large file and symlinks go alone (through ``_get``,
    which follows one that stays inside base_path and refuses one that leaves it); a directory
    and a missing file fail in the batch. Local files of failures stay as they were."""
    base = Path(sftp_base_path)
    files = {f"d/f{number:02}.bin": os.urandom(3000 + number) for number in range(20)}
    files["d/large.bin"] = os.urandom(300 * 1024)
    for key, data in files.items():
        (base / key).parent.mkdir(exist_ok=True)
        (base / key).write_bytes(data)
    os.symlink(base / "d" / "f00.bin", base / "in.bin")
    (base / "d" / "sub").mkdir()
    alone: list[str] = []
    single_get = SFTPStorage._get

    def recording_get(storage: SFTPStorage, key: str, dest: str, count: object) -> None:
        alone.append(key)
        single_get(storage, key, dest, count)  # type: ignore[arg-type]

    monkeypatch.setattr(SFTPStorage, "_get", recording_get)
    keys = [*files, "in.bin", "out.txt", "d/sub", "d/missing.bin"]
    target = tmp_path / "target"
    target.mkdir()
    for name in ("out.txt", "sub", "missing.bin"):
        (target / name).write_bytes(b"previous")
    pairs = [(key, target / key.rsplit("/", 1)[-1]) for key in keys]
    log: list[int] = []
    results = backend_sftp.download_many(pairs, max_concurrency=8, progress=log.append)
    assert sorted(alone) == ["d/large.bin", "in.bin", "out.txt"]
    for result, (key, local) in zip(results[:-3], pairs, strict=False):
        data = files.get(key, files["d/f00.bin"])
        assert result == TransferResult(key, str(local), len(data))
        assert local.read_bytes() == data
    assert isinstance(results[-3].error, InvalidPathError)
    assert isinstance(results[-2].error, FileNotFoundInStorageError)
    assert isinstance(results[-1].error, FileNotFoundInStorageError)
    assert [r.error.path for r in results[-3:]] == keys[-3:]  # type: ignore[union-attr]
    for name in ("out.txt", "sub", "missing.bin"):
        assert (target / name).read_bytes() == b"previous"
    assert log == sorted(log) and log[-1] == sum(len(d) for d in files.values()) + 3000
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for _, p in pairs)


def test_a_download_batch_cut_off_goes_again_on_a_new_connection(
    sftp_proxied: tuple[SFTPStorage, FaultProxy], sftp_base_path: str, tmp_path: Path
) -> None:
    storage, proxy = sftp_proxied
    files = {f"f{number:02}.bin": os.urandom(16 * 1024 + number) for number in range(60)}
    for name, data in files.items():
        Path(sftp_base_path, name).write_bytes(data)
    storage.exists("warm")
    proxy.cut_after(300 * 1024, "downstream")
    progress: list[int] = []
    results = storage.download_many(
        [(name, tmp_path / name) for name in files], max_concurrency=2, progress=progress.append
    )
    assert not proxy.armed
    assert [r.error for r in results] == [None] * len(files)
    for name, data in files.items():
        assert (tmp_path / name).read_bytes() == data
    assert progress == sorted(progress) and progress[-1] == sum(len(d) for d in files.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)


def test_an_unreachable_server_fails_each_download(
    sftp_proxied: tuple[SFTPStorage, FaultProxy], tmp_path: Path
) -> None:
    storage, proxy = sftp_proxied
    proxy.refuse_new = True
    pairs = [(f"gone/{number}.bin", tmp_path / f"{number}.bin") for number in range(70)]
    results = storage.download_many(pairs, max_concurrency=4)
    for result, (key, _) in zip(results, pairs, strict=True):
        assert isinstance(result.error, StorageConnectionError) and result.error.path == key
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("no_single_puts")
def test_a_batch_publishes_by_rename_where_the_server_lacks_posix_rename(
    backend_sftp: SFTPStorage, sftp_base_path: str, tmp_path: Path
) -> None:
    """OpenSSH has ``posix-rename``; without it a rename refused over an existing file is
    replaced by a removal and a rename, as for a single upload."""
    files = local_files(tmp_path, 12)
    Path(sftp_base_path, "f003.bin").write_bytes(b"old")
    with backend_sftp.connection() as session:
        session.extensions.pop("posix-rename@openssh.com")
    results = backend_sftp.upload_many([(local, local.name) for local, _ in files])
    with backend_sftp.connection() as leased:
        assert leased is session and "posix-rename@openssh.com" not in leased.extensions
    assert [r.error for r in results] == [None] * len(files)
    for local, data in files:
        assert Path(sftp_base_path, local.name).read_bytes() == data
    assert temp_files(sftp_base_path) == []
