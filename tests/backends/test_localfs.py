"""LocalFS-specific behaviour: the sandbox, temp files, permissions, the root."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keg_storage import InvalidPathError, LocalFSError, LocalFSStorage


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


def test_temp_file_of_open_writer_is_not_listed(layout: tuple[LocalFSStorage, Path]) -> None:
    storage, _ = layout
    file = storage.open("pending.txt", "wb")
    file.write(b"x")
    assert len(list(storage.root.iterdir())) == 1
    assert storage.list() == []
    file.close()
    assert [e.name for e in storage.list()] == ["pending.txt"]


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
