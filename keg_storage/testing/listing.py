"""CONTRACT §4 and §11: listings, lazy and in order."""

from __future__ import annotations

import pytest

from keg_storage import InvalidPathError, StorageBackend

from .helpers import BackendCases, write

TRAPS = [
    "A",
    "B.txt",
    "_u",
    "a b",
    "a-b",
    "a.b",
    "a0",
    "a/b-c",
    "a/b.txt",
    "a/b/c.txt",
    "a/b0",
    "a/bz",
    "ab/c",
    "deep/1/2/3-x",
    "deep/1/2/3/4/5/f",
    "deep/1/20",
    "x\uff21",
    "x\U0001f600",
    "x\U0001f600y/z",
    "xz",
    "~",
    "\u00e9/x",
    "\u00e9a",
]
"""Keys whose order a lazy listing gets wrong when it sorts a directory by its bare name
(``a/`` before ``a-b``, ``a.b``), by UTF-16 code units (``x\\U0001f600`` before ``x\\uff21``)
or puts a page's directories before its files."""


def expected(keys: list[str], prefix: str, recursive: bool) -> list[str]:
    """What ``list(prefix, recursive=recursive)`` gives for a store holding ``keys``, worked
    out here from the keys alone: full keys sorted as Python sorts strings, and one level
    down only direct children, directories named with a trailing ``/``."""
    under = [key for key in keys if key.startswith(prefix)]
    if recursive:
        return sorted(under)
    children = set()
    for key in under:
        head, slash, _ = key[len(prefix) :].partition("/")
        children.add(prefix + head + slash)
    return sorted(children)


def listed(storage: StorageBackend, path: str, recursive: bool) -> list[str]:
    return [entry.name for entry in storage.iter_list(path, recursive=recursive)]


class ListingCases(BackendCases):
    """``iter_list`` gives what ``list`` gives, in the same order, lazily."""

    @pytest.fixture
    def traps(self, storage: StorageBackend) -> list[str]:
        for key in TRAPS:
            write(storage, key, key.encode())
        return TRAPS

    @pytest.mark.parametrize("recursive", [True, False], ids=["recursive", "one-level"])
    @pytest.mark.parametrize("path", ["", "a", "a/b", "deep/1", "deep/1/2/", "\u00e9"])
    def test_iter_list_equals_list_in_order(
        self, storage: StorageBackend, traps: list[str], path: str, recursive: bool
    ) -> None:
        prefix = path.rstrip("/") + "/" if path else ""
        lazy = listed(storage, path, recursive)
        assert lazy == expected(traps, prefix, recursive)
        assert storage.list(path, recursive=recursive) == list(
            storage.iter_list(path, recursive=recursive)
        )

    def test_entries_of_iter_list_are_the_files(
        self, storage: StorageBackend, traps: list[str]
    ) -> None:
        sizes = {entry.name: entry.size for entry in storage.iter_list()}
        assert sizes == {key: len(key.encode()) for key in traps}
        top = {entry.name: entry for entry in storage.iter_list(recursive=False)}
        assert (top["a/"].size, top["a/"].last_modified) == (0, None)
        assert top["a-b"].last_modified is not None

    def test_unpublished_writes_are_not_listed(
        self, storage: StorageBackend, traps: list[str]
    ) -> None:
        """Temp files of writes in progress (LocalFS, SFTP) stay out of every listing."""
        with storage.open("a/pending.txt", "wb") as pending:
            pending.write(b"not yet")
            pending.flush()
            assert listed(storage, "", True) == sorted(traps)
            assert listed(storage, "a", False) == expected(traps, "a/", False)
            pending.abort()
        assert listed(storage, "a", True) == expected(traps, "a/", True)

    @pytest.mark.parametrize(
        ("pattern", "matches"),
        [
            ("a/b*", ["a/b-c", "a/b.txt", "a/b0", "a/bz"]),
            ("a*", ["a b", "a-b", "a.b", "a0"]),
            ("x*", ["xz", "x\uff21", "x\U0001f600"]),
            ("**/c*", ["a/b/c.txt", "ab/c"]),
            ("deep/**/f", ["deep/1/2/3/4/5/f"]),
        ],
    )
    def test_glob_walks_the_listing_in_order(
        self, storage: StorageBackend, traps: list[str], pattern: str, matches: list[str]
    ) -> None:
        assert [entry.name for entry in storage.glob(pattern)] == matches

    @pytest.mark.parametrize("path", ["missing", "missing/deeper/", "a-b", "a/b.txt"])
    def test_missing_directory_lists_nothing(
        self, storage: StorageBackend, traps: list[str], path: str
    ) -> None:
        assert listed(storage, path, True) == []
        assert listed(storage, path, False) == []

    def test_invalid_path_raises_before_iterating(self, storage: StorageBackend) -> None:
        with pytest.raises(InvalidPathError) as raised:
            storage.iter_list("a/../b")
        assert raised.value.path == "a/../b"

    def test_first_entry_comes_before_the_rest_is_fetched(self, storage: StorageBackend) -> None:
        """Lazy: a file written after the first entry arrived, where the listing has not read
        yet (a later page, a later directory), is in the same listing. With pages of two
        entries (``list_page_size``, for services that page by count), a listing that fetched
        everything before its first entry could not show it."""
        if not storage.ordered_listing:
            pytest.skip("the backend's _list is not ordered: listings are collected and sorted")
        for key in ["d1/a", "d1/b", "d2/a", "d2/b", "d3/a", "d3/b"]:
            write(storage, key, b"x")
        storage.list_page_size = 2
        entries = storage.iter_list()
        assert next(entries).name == "d1/a"
        write(storage, "d3/late", b"x")
        assert [entry.name for entry in entries] == [
            "d1/b",
            "d2/a",
            "d2/b",
            "d3/a",
            "d3/b",
            "d3/late",
        ]

    def test_files_deleted_while_listing(self, storage: StorageBackend) -> None:
        """Deleting each file as it is listed (a clean-up loop) neither fails nor skips one."""
        keys = [f"clean/{index // 3}/{index}" for index in range(9)]
        for key in keys:
            write(storage, key, b"x")
        storage.list_page_size = 2
        seen = []
        for entry in storage.iter_list("clean"):
            seen.append(entry.name)
            storage.delete(entry.name)
        assert seen == sorted(keys)
        assert storage.list() == []
