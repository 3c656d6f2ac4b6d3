"""CONTRACT §2: paths are keys relative to the root, validated before any I/O."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pytest

from keg_storage import InvalidPathError, StorageBackend
from keg_storage.errors import describe_backend

from .helpers import BackendCases, names, read, write

BAD_FILE_PATHS = [
    "",
    "/",
    "../escape.txt",
    "a/../../escape.txt",
    "a/./b.txt",
    "..",
    "a/..",
    "nul\x00byte.txt",
    "new\nline.txt",
    "tab\there.txt",
    "bell\x07.txt",
    "del\x7f.txt",
    "c1\x85control.txt",
    "dir/",
]

FILE_OPERATIONS: dict[str, Callable[[StorageBackend, str], Any]] = {
    "open-read": lambda s, p: s.open(p, "rb"),
    "open-write": lambda s, p: s.open(p, "wb"),
    "stat": lambda s, p: s.stat(p),
    "exists": lambda s, p: s.exists(p),
    "delete": lambda s, p: s.delete(p),
    "copy-source": lambda s, p: s.copy(p, "target.txt"),
    "copy-target": lambda s, p: s.copy("source.txt", p),
    "move-source": lambda s, p: s.move(p, "target.txt"),
    "move-target": lambda s, p: s.move("source.txt", p),
    "download": lambda s, p: s.download(p, io.BytesIO()),
    "upload": lambda s, p: s.upload(io.BytesIO(b"x"), p),
    "link": lambda s, p: s.link_to(p, "d", timedelta(minutes=5)),
}


def _key_of(size: int, segment_bytes: int) -> str:
    """A key of exactly ``size`` bytes whose segments are at most ``segment_bytes`` long and
    whose file name is long (longer than a temp file's name beside it)."""
    segments = []
    left = size
    while left > segment_bytes + 1:
        segments.append("d" * (segment_bytes - 1))
        left -= segment_bytes
    segments.append("f" * left)
    return "/".join(segments)


class PathCases(BackendCases):
    """CONTRACT §2: paths are keys relative to the root, validated before any I/O."""

    @pytest.mark.parametrize("operation", sorted(FILE_OPERATIONS))
    @pytest.mark.parametrize("bad_path", BAD_FILE_PATHS)
    def test_bad_file_paths_are_refused_before_any_io(
        self, storage: StorageBackend, operation: str, bad_path: str
    ) -> None:
        write(storage, "source.txt", b"source")
        with pytest.raises(InvalidPathError) as excinfo:
            FILE_OPERATIONS[operation](storage, bad_path)
        message = str(excinfo.value)
        assert storage.name in message
        assert names(storage) == ["source.txt"]
        assert read(storage, "source.txt") == b"source"

    @pytest.mark.parametrize("bad_path", ["..", "a/../..", "x\x00", "a/./b"])
    def test_bad_directory_paths_are_refused_by_list(
        self, storage: StorageBackend, bad_path: str
    ) -> None:
        with pytest.raises(InvalidPathError):
            storage.list(bad_path)

    def test_leading_and_doubled_slashes_are_ignored(self, storage: StorageBackend) -> None:
        write(storage, "/a//b///c.txt", b"data")
        assert names(storage) == ["a/b/c.txt"]
        assert read(storage, "a/b/c.txt") == b"data"
        assert storage.exists("//a/b/c.txt")
        assert names(storage, "/a//b/") == ["a/b/c.txt"]

    def test_root_lists_everything(self, storage: StorageBackend) -> None:
        write(storage, "one.txt", b"1")
        write(storage, "dir/two.txt", b"2")
        assert names(storage) == names(storage, "/") == ["dir/two.txt", "one.txt"]

    @pytest.mark.parametrize(
        "path",
        [
            "with space.txt",
            "star*question?tilde~[brackets].txt",
            "ünïcödé/日本語/файл.txt",
            "emoji 😀.bin",
            "percent%20and+plus&amp;=.txt",
            "quote'double\"back\\slash.txt",
            "$HOME and `cmd` and $(cmd).txt",
        ],
    )
    def test_any_other_unicode_is_a_plain_name(self, storage: StorageBackend, path: str) -> None:
        if set(path) & set(storage.unsupported_path_characters):
            with pytest.raises(InvalidPathError):
                write(storage, path, path.encode())
            assert names(storage) == []
            return
        write(storage, path, path.encode())
        assert read(storage, path) == path.encode()
        assert names(storage) == [path]
        assert storage.stat(path).size == len(path.encode())
        storage.delete(path)
        assert names(storage) == []

    @pytest.mark.parametrize("operation", sorted(FILE_OPERATIONS))
    def test_thousands_of_segments_are_refused_or_kept_never_a_recursion(
        self, storage: StorageBackend, operation: str
    ) -> None:
        deep = "a/" * 3000 + "b"
        write(storage, "source.txt", b"source")
        if storage.max_key_bytes is None:
            write(storage, deep, b"deep")
            assert read(storage, deep) == b"deep"
            return
        with pytest.raises(InvalidPathError) as excinfo:
            FILE_OPERATIONS[operation](storage, deep)
        assert storage.name in str(excinfo.value)
        assert "longer than this backend allows" in str(excinfo.value)
        assert names(storage) == ["source.txt"]

    def test_the_longest_key_a_backend_allows_works_and_one_byte_more_is_refused(
        self,
        storage: StorageBackend,
    ) -> None:
        if storage.max_key_bytes is None:  # Memory keeps any key
            write(storage, "k" * 100_000, b"long")
            assert names(storage) == ["k" * 100_000]
            return
        longest = _key_of(storage.max_key_bytes, storage.max_segment_bytes or 255)
        write(storage, longest, b"long")
        assert read(storage, longest) == b"long"
        assert names(storage) == [longest]
        with pytest.raises(InvalidPathError, match="longer than this backend allows"):
            write(storage, longest + "x", b"longer")
        storage.delete(longest)
        assert names(storage) == []

    def test_a_name_longer_than_the_file_system_keeps_is_refused(
        self, storage: StorageBackend
    ) -> None:
        if storage.max_segment_bytes is None:  # object stores: any name up to the key limit
            name = "é" * 300
            write(storage, f"dir/{name}", b"fits")
            assert names(storage) == [f"dir/{name}"]
            return
        name = "é" * (storage.max_segment_bytes // 2) + "xy"  # one byte over, two-byte characters
        with pytest.raises(InvalidPathError, match="segment is longer"):
            write(storage, f"dir/{name}", b"x")
        with pytest.raises(InvalidPathError, match="segment is longer"):
            storage.list(name)
        write(storage, f"dir/{name[:-1]}", b"fits")
        assert names(storage) == [f"dir/{name[:-1]}"]

    def test_pure_posix_path_keys_work_everywhere_a_path_is_taken(
        self, storage: StorageBackend, tmp_path: Path
    ) -> None:
        folder = PurePosixPath("reports")
        key = folder / "2026.csv"
        with storage.open(key, "wb") as file:
            file.write(b"a,b\n")
        with storage.open(key, "rt") as text:
            assert text.read() == "a,b\n"
        assert storage.exists(key)
        assert storage.stat(key).size == 4
        assert names(storage, folder) == ["reports/2026.csv"]
        assert names(storage, PurePosixPath("/"), recursive=False) == ["reports/"]
        assert [entry.name for entry in storage.glob(folder / "*.csv")] == ["reports/2026.csv"]
        local = tmp_path / "local.csv"
        storage.get(key, local)
        assert local.read_bytes() == b"a,b\n"
        uploads: Any = PurePosixPath("/uploads")  # put's dest is annotated str; any path works
        storage.put(local, uploads / "again.csv")
        storage.copy(key, PurePosixPath("archive/2026.csv"))
        storage.move(PurePosixPath("archive/2026.csv"), PurePosixPath("archive/moved.csv"))
        sink = io.BytesIO()
        storage.download(PurePosixPath("archive/moved.csv"), sink)
        assert sink.getvalue() == b"a,b\n"
        storage.upload(io.BytesIO(b"up"), PurePosixPath("uploads/up.txt"))
        assert names(storage) == [
            "archive/moved.csv",
            "reports/2026.csv",
            "uploads/again.csv",
            "uploads/up.txt",
        ]
        storage.delete(key)
        assert not storage.exists(key)
        with pytest.raises(InvalidPathError, match=r"'\.' and '\.\.' are not allowed"):
            storage.open(PurePosixPath("..") / "escape.txt", "wb")

    def test_windows_paths_are_converted_and_drives_refused(self, storage: StorageBackend) -> None:
        """A PureWindowsPath's ``\\`` are separators, so its segments become the key's; a drive
        names a place on a local disk and is refused."""
        write(storage, PureWindowsPath("docs\\a.txt"), b"windows")
        assert names(storage) == ["docs/a.txt"]
        assert read(storage, PureWindowsPath("\\docs\\a.txt")) == b"windows"
        with pytest.raises(InvalidPathError) as excinfo:
            storage.exists(PureWindowsPath("C:\\docs\\a.txt"))
        assert str(excinfo.value) == (
            "a Windows path with a drive names a local file, not a key: give the key relative to "
            f"the backend's root (backend {describe_backend(storage)}, path 'C:\\\\docs\\\\a.txt')"
        )

    @pytest.mark.parametrize("bad_key", [b"bytes.txt", 42, None])
    def test_other_key_types_are_refused(self, storage: StorageBackend, bad_key: Any) -> None:
        with pytest.raises(InvalidPathError) as excinfo:
            storage.exists(bad_key)
        assert str(excinfo.value) == (
            "path must be a str or an os.PathLike of str, not "
            f"{type(bad_key).__name__} {bad_key!r} (backend {describe_backend(storage)})"
        )
