"""LocalFS-specific behaviour: the sandbox, temp files, permissions, the root."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keg_storage import (
    FileNotFoundInStorageError,
    InvalidPathError,
    LocalFSError,
    LocalFSStorage,
    StorageError,
    StoragePermissionError,
)
from keg_storage.backends import publish


@pytest.fixture
def layout(tmp_path: Path) -> tuple[LocalFSStorage, Path]:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    return LocalFSStorage(str(root)), outside


def test_str_root_without_name_gets_default_name(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    assert LocalFSStorage(str(tmp_path / "files")).name == "fs-files"
    assert LocalFSStorage(tmp_path / "files", name="mine").name == "mine"


def test_missing_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LocalFSError, match="does not exist"):
        LocalFSStorage(tmp_path / "missing")


def test_symlinked_file_leading_outside_is_refused(layout: tuple[LocalFSStorage, Path]) -> None:
    storage, outside = layout
    os.symlink(outside / "secret.txt", storage.root / "link.txt")
    for action in (
        lambda: storage.open("link.txt"),
        lambda: storage.open("link.txt", "wb"),
        lambda: storage.stat("link.txt"),
        lambda: storage.copy("link.txt", "copy.txt"),
        lambda: storage.move("link.txt", "moved.txt"),
        lambda: storage.delete("link.txt"),
    ):
        with pytest.raises(InvalidPathError):
            action()
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert not (storage.root / "copy.txt").exists()


def test_symlinked_directory_leading_outside_is_refused(
    layout: tuple[LocalFSStorage, Path],
) -> None:
    storage, outside = layout
    os.symlink(outside, storage.root / "dir")
    with pytest.raises(InvalidPathError):
        storage.open("dir/secret.txt")
    with pytest.raises(InvalidPathError), storage.open("dir/planted.txt", "wb") as file:
        file.write(b"x")
    with pytest.raises(InvalidPathError):
        storage.list("dir")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert storage.list() == []


def test_copy_source_outside_root_is_refused(layout: tuple[LocalFSStorage, Path]) -> None:
    storage, outside = layout
    with pytest.raises(InvalidPathError):
        storage.copy("../outside/secret.txt", "stolen.txt")
    with pytest.raises(InvalidPathError):
        storage.copy(str(outside / "secret.txt").lstrip("/") + "/../x", "stolen.txt")
    assert storage.list() == []


def test_absolute_paths_stay_inside_root(layout: tuple[LocalFSStorage, Path]) -> None:
    storage, outside = layout
    with storage.open(str(outside / "secret.txt"), "wb") as file:
        file.write(b"inside")
    assert (outside / "secret.txt").read_bytes() == b"secret"
    inside = storage.root / str(outside / "secret.txt").lstrip("/")
    assert inside.read_bytes() == b"inside"


def test_exception_in_with_leaves_no_temp_file(layout: tuple[LocalFSStorage, Path]) -> None:
    storage, _ = layout
    with storage.open("doc.txt", "wb") as file:
        file.write(b"old")
    with pytest.raises(RuntimeError), storage.open("doc.txt", "wb") as file:
        file.write(b"new")
        raise RuntimeError
    assert sorted(p.name for p in storage.root.iterdir()) == ["doc.txt"]
    assert (storage.root / "doc.txt").read_bytes() == b"old"


@pytest.fixture(params=["unnamed", "named"])
def temp_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How LocalFS makes its temp files: unnamed (``O_TMPFILE``, which ext4 and tmpfs have), or
    named, as on a file system without unnamed files (NFS), which no local disk of this machine
    is: that one is chosen by turning the unnamed kind off."""
    if request.param == "named":
        monkeypatch.setattr(publish, "_UNNAMED", 0)
    return str(request.param)


def test_temp_file_of_open_writer_is_not_listed(
    layout: tuple[LocalFSStorage, Path], temp_kind: str
) -> None:
    """An unnamed temp file is nowhere in the directory; a named one is, and lists hide it."""
    storage, _ = layout
    file = storage.open("pending.txt", "wb")
    file.write(b"x")
    assert len(list(storage.root.iterdir())) == (0 if temp_kind == "unnamed" else 1)
    assert storage.list() == []
    file.close()
    assert [e.name for e in storage.list()] == ["pending.txt"]
    assert [p.name for p in storage.root.iterdir()] == ["pending.txt"]


def test_a_crashed_writer_leaves_no_file_where_it_has_unnamed_ones(
    layout: tuple[LocalFSStorage, Path], temp_kind: str
) -> None:
    """A process that dies mid-write (no cleanup runs) leaves nothing in the directory of an
    unnamed temp file; a named one stays, hidden from lists, for ``cleanup_temp_files``."""
    storage, _ = layout
    script = (
        "import os, sys\n"
        "from keg_storage import LocalFSStorage\n"
        "from keg_storage.backends import publish\n"
        "publish._UNNAMED = publish._UNNAMED if sys.argv[2] == 'unnamed' else 0\n"
        "file = LocalFSStorage(sys.argv[1]).open('dir/cut.bin', 'wb')\n"
        "file.write(b'x' * 100_000)\n"
        "file.flush()\n"
        "os._exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(storage.root), temp_kind])
    assert done.returncode == 3
    left = [p.name for p in (storage.root / "dir").iterdir()]
    assert len(left) == (0 if temp_kind == "unnamed" else 1)
    assert storage.list("dir/") == []


def test_written_files_get_umask_permissions(layout: tuple[LocalFSStorage, Path]) -> None:
    storage, _ = layout
    old = os.umask(0o022)
    try:
        with storage.open("perm.txt", "wb") as file:
            file.write(b"x")
        storage.copy("perm.txt", "perm-copy.txt")
    finally:
        os.umask(old)
    for name in ("perm.txt", "perm-copy.txt"):
        assert stat.S_IMODE((storage.root / name).stat().st_mode) == 0o644


def test_a_writer_replaces_a_file_created_while_it_writes(
    layout: tuple[LocalFSStorage, Path], temp_kind: str
) -> None:
    """The name was free when the writer opened; a file made there meanwhile (by another
    program) is replaced whole at ``close()``, not kept beside a temp file."""
    storage, _ = layout
    with storage.open("late.txt", "wb") as file:
        file.write(b"ours")
        (storage.root / "late.txt").write_bytes(b"theirs")
    assert (storage.root / "late.txt").read_bytes() == b"ours"
    assert [p.name for p in storage.root.iterdir()] == ["late.txt"]


@pytest.mark.parametrize("how", ["open", "upload"])
def test_a_write_survives_the_pruning_of_its_directory(
    layout: tuple[LocalFSStorage, Path], temp_kind: str, how: str
) -> None:
    """A delete of a directory's last file removes the directory while a new file is written
    there (an unnamed temp file has no entry to keep it): the file is published in the
    directory made again."""
    storage, _ = layout
    storage.upload(io.BytesIO(b"old"), "d/other.txt")

    class DeletingReader(io.RawIOBase):
        """A body whose reading deletes the directory's other file midway."""

        sent = False

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            if self.sent:
                storage.delete("d/other.txt")
                return 0
            self.sent = True
            buffer[:3] = b"new"
            return 3

    if how == "open":
        with storage.open("d/new.txt", "wb") as file:
            file.write(b"new")
            storage.delete("d/other.txt")
    else:
        storage.upload(io.BufferedReader(DeletingReader()), "d/new.txt")
    assert [entry.name for entry in storage.list("d/")] == ["d/new.txt"]
    assert (storage.root / "d" / "new.txt").read_bytes() == b"new"
    assert sorted(p.name for p in (storage.root / "d").iterdir()) == ["new.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_temp_file_of_open_writer_is_private(
    layout: tuple[LocalFSStorage, Path], temp_kind: str, umask: int
) -> None:
    """Bytes of a write that may never be published are readable by no one else: they have no
    name, or a name of mode 0600; the published file has the mode a new file gets."""
    storage, _ = layout
    old = os.umask(umask)
    try:
        with storage.open("secret.txt", "wb") as file:
            file.write(b"x")
            modes = [stat.S_IMODE(temp.stat().st_mode) for temp in storage.root.iterdir()]
            assert modes == ([] if temp_kind == "unnamed" else [0o600])
        storage.upload(io.BytesIO(b"y"), "uploaded.txt")
        storage.get("secret.txt", str(storage.root.parent / "got.txt"))
    finally:
        os.umask(old)
    for written in (storage.root / "secret.txt", storage.root / "uploaded.txt"):
        assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((storage.root.parent / "got.txt").stat().st_mode) == 0o666 & ~umask


def test_delete_prunes_empty_directories(layout: tuple[LocalFSStorage, Path]) -> None:
    storage, _ = layout
    with storage.open("a/b/c.txt", "wb") as file:
        file.write(b"x")
    storage.delete("a/b/c.txt")
    assert list(storage.root.iterdir()) == []


def test_writing_over_a_directory_is_refused(layout: tuple[LocalFSStorage, Path]) -> None:
    storage, _ = layout
    with storage.open("a/b.txt", "wb") as file:
        file.write(b"x")
    with pytest.raises(InvalidPathError):
        storage.open("a", "wb")


def test_fsync_option_publishes_the_same_bytes(tmp_path: Path) -> None:
    storage = LocalFSStorage(tmp_path, fsync=True)
    with storage.open("durable.bin", "wb") as file:
        file.write(b"durable")
    assert (tmp_path / "durable.bin").read_bytes() == b"durable"


def bounded(action: Callable[[], object], seconds: float = 5) -> BaseException | None:
    """Run ``action`` on a daemon thread; the error it raised (None if none). Fails the test if
    it has not returned within ``seconds``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{action} blocked"
    return outcome[0]


def test_fifo_at_a_key_is_refused_without_blocking(
    layout: tuple[LocalFSStorage, Path], tmp_path: Path
) -> None:
    storage, _ = layout
    os.mkfifo(storage.root / "pipe.bin")
    try:
        for action in (
            lambda: storage.open("pipe.bin").read(),
            lambda: storage.open("pipe.bin", "r+").read(),
            lambda: storage.get("pipe.bin", tmp_path / "got.bin"),
            lambda: storage.copy("pipe.bin", "copy.bin"),
            lambda: storage.download("pipe.bin", io.BytesIO()),
            lambda: storage.stat("pipe.bin"),
            lambda: storage.move("pipe.bin", "moved.bin"),
        ):
            assert isinstance(bounded(action), FileNotFoundInStorageError)
        assert not storage.exists("pipe.bin")
        assert storage.list() == []
    finally:  # wake a reader stuck in open() when the test fails
        with contextlib.suppress(OSError):
            os.close(os.open(storage.root / "pipe.bin", os.O_WRONLY | os.O_NONBLOCK))
    assert sorted(p.name for p in storage.root.iterdir()) == ["pipe.bin"]


def test_read_write_refuses_a_hard_linked_file(layout: tuple[LocalFSStorage, Path]) -> None:
    storage, outside = layout
    os.link(outside / "secret.txt", storage.root / "linked.txt")
    with pytest.raises(StoragePermissionError, match="hard link") as excinfo:
        storage.open("linked.txt", "r+")
    assert "linked.txt" in str(excinfo.value) and storage.name in str(excinfo.value)
    with storage.open("linked.txt", "wb") as file:  # replaces the link, not the file
        file.write(b"replaced")
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert storage.open("linked.txt").read() == b"replaced"


@pytest.mark.parametrize(
    "path", ["a" * 256, "dir/" + "é" * 128 + "/file.txt", "/".join(["d" * 200] * 25)]
)
def test_names_too_long_for_the_file_system_are_invalid(
    layout: tuple[LocalFSStorage, Path], tmp_path: Path, path: str
) -> None:
    storage, _ = layout
    local = tmp_path / "local.bin"
    local.write_bytes(b"x")
    for action in (
        lambda: storage.open(path, "wb"),
        lambda: storage.open(path),
        lambda: storage.upload(io.BytesIO(b"x"), path),
        lambda: storage.put(local, path),
        lambda: storage.get(path, tmp_path / "got.bin"),
        lambda: storage.stat(path),
        lambda: storage.exists(path),
        lambda: storage.delete(path),
        lambda: storage.copy("any.txt", path),
        lambda: storage.list(path),
    ):
        with pytest.raises(InvalidPathError, match="longer than"):
            action()
    assert storage.list() == []


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_descriptor_leaks(layout: tuple[LocalFSStorage, Path], tmp_path: Path) -> None:
    storage, outside = layout
    local = tmp_path / "local.bin"
    local.write_bytes(b"local")
    os.symlink(outside, storage.root / "link")
    os.mkfifo(storage.root / "fifo")
    os.link(outside / "secret.txt", storage.root / "hard.txt")

    def aborted_write() -> None:
        with storage.open("a/b/aborted.txt", "wb") as file:
            file.write(b"x")
            raise RuntimeError

    def read_write() -> None:
        with storage.open("a/b/c.txt", "r+") as file:
            file.write(file.read())

    operations: list[Callable[[], object]] = [
        lambda: storage.upload(io.BytesIO(b"data"), "a/b/c.txt"),
        read_write,
        lambda: storage.open("a/b/c.txt").read(),
        lambda: storage.put(local, "a/b/put.txt"),
        lambda: storage.get("a/b/put.txt", tmp_path / "got.bin"),
        lambda: storage.download("a/b/c.txt", io.BytesIO()),
        lambda: storage.copy("a/b/c.txt", "x/y/copy.txt"),
        lambda: storage.move("x/y/copy.txt", "z/moved.txt"),
        lambda: storage.stat("z/moved.txt"),
        lambda: storage.list(),
        lambda: storage.list("a", recursive=False),
        lambda: storage.glob("**/*.txt"),
        lambda: storage.delete("z/moved.txt"),
        aborted_write,
        lambda: storage.open("missing/file.txt"),
        lambda: storage.open("link/secret.txt"),
        lambda: storage.open("link/new.txt", "wb"),
        lambda: storage.open("fifo"),
        lambda: storage.open("hard.txt", "r+"),
        lambda: storage.open("a/b/c.txt/under-a-file", "wb"),
        lambda: storage.copy("fifo", "copy.txt"),
        lambda: storage.move("missing.txt", "moved.txt"),
        lambda: storage.open("n" * 300),
        lambda: storage.put(tmp_path / "missing.bin", "p.txt"),
    ]
    for operation in operations:  # warm up: imports and caches open their own files once
        with contextlib.suppress(StorageError, RuntimeError, FileNotFoundError):
            operation()
    before = open_descriptors()
    for _ in range(20):
        for operation in operations:
            with contextlib.suppress(StorageError, RuntimeError, FileNotFoundError):
                operation()
    assert open_descriptors() == before
