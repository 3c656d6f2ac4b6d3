"""LocalFS when the disk says no: a full filesystem, a file-size limit, a read-only directory.

The user gets a typed StorageError naming the backend and the path, the old version stays, and
no temp file is left behind. The full and read-only filesystems are small tmpfs mounts this test
makes (it runs as root, as CI does); the file-size limit needs no privilege.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from keg_storage import LocalFSStorage, StorageError

MiB = 1024 * 1024


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def files_in(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("how", ["upload", "stream", "put", "copy"])
def test_full_disk(small_filesystem: Path, tmp_path: Path, how: str) -> None:
    storage = LocalFSStorage(small_filesystem)
    storage.upload(io.BytesIO(b"old version"), "doc.bin")
    big = os.urandom(3 * MiB)
    local = tmp_path / "big.bin"
    local.write_bytes(big)
    with pytest.raises(StorageError) as excinfo:
        if how == "upload":
            storage.upload(io.BytesIO(big), "doc.bin")
        elif how == "stream":
            with storage.open("doc.bin", "wb") as file:
                for start in range(0, len(big), 256 * 1024):
                    file.write(big[start : start + 256 * 1024])
        elif how == "put":
            storage.put(local, "doc.bin")
        else:
            storage.upload(io.BytesIO(big[: MiB + MiB // 2]), "half.bin")
            storage.copy("half.bin", "doc.bin")
    assert "doc.bin" in str(excinfo.value) and storage.name in str(excinfo.value)
    assert storage.open("doc.bin").read() == b"old version"
    assert set(files_in(small_filesystem)) <= {"doc.bin", "half.bin"}


def test_file_size_limit() -> None:
    """RLIMIT_FSIZE in a child process: a write past the limit fails with EFBIG."""
    code = textwrap.dedent(
        """
        import io, resource, signal, sys, tempfile, os
        from keg_storage import LocalFSStorage, StorageError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        root = tempfile.mkdtemp()
        storage = LocalFSStorage(root)
        storage.upload(io.BytesIO(b"old"), "doc.bin")
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))
        try:
            storage.upload(io.BytesIO(os.urandom(3 * 1024 * 1024)), "doc.bin")
        except StorageError as exc:
            print("StorageError", "doc.bin" in str(exc))
        print(open(os.path.join(root, "doc.bin"), "rb").read().decode())
        print(sorted(os.listdir(root)))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.splitlines() == ["StorageError True", "old", "['doc.bin']"], result.stderr


@pytest.fixture
def read_only_directory(small_filesystem: Path) -> Iterator[Path]:
    """A directory nobody can write to, root included: a tmpfs remounted read-only."""
    (small_filesystem / "doc.bin").write_bytes(b"old version")
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    yield small_filesystem


def test_read_only_directory(read_only_directory: Path) -> None:
    storage = LocalFSStorage(read_only_directory)
    assert storage.open("doc.bin").read() == b"old version"
    for action in (
        lambda: storage.upload(io.BytesIO(b"new"), "doc.bin"),
        lambda: storage.upload(io.BytesIO(b"new"), "dir/new.bin"),
        lambda: storage.copy("doc.bin", "copy.bin"),
        lambda: storage.move("doc.bin", "moved.bin"),
        lambda: storage.delete("doc.bin"),
    ):
        with pytest.raises(StorageError) as excinfo:
            action()
        assert storage.name in str(excinfo.value)
        assert "Read-only file system" in str(excinfo.value)
    assert files_in(read_only_directory) == ["doc.bin"]
    assert storage.open("doc.bin").read() == b"old version"
