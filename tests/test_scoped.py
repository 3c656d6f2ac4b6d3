"""ScopedStorage's own machinery, where the conformance kit (keg_storage/testing/scopes.py)
cannot look: the listing stays lazy, and repr, close and the parent are what they say."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from keg_storage import ListEntry, MemoryStorage
from keg_storage.backends.scoped import ScopedInternalLinksStorage, ScopedStorage
from keg_storage.testing import write
from keg_storage.testing.example import DictStorage


class CountingMemory(MemoryStorage):
    """Memory storage that counts the entries its listing has handed out so far."""

    handed_out = 0

    def _list(self, prefix: str, recursive: bool) -> Iterator[ListEntry]:
        for entry in super()._list(prefix, recursive):
            self.handed_out += 1
            yield entry


def test_a_views_listing_maps_entries_one_by_one() -> None:
    storage = CountingMemory()
    for number in range(5):
        write(storage, f"t/{number}.txt", b"x")
    entries = storage.scoped("t")._list("", True)
    first = next(iter(entries))
    assert first.name.endswith(".txt") and "/" not in first.name
    assert storage.handed_out == 1  # nothing more was pulled from the parent
    assert sorted([first.name, *(entry.name for entry in entries)]) == [
        f"{number}.txt" for number in range(5)
    ]


def test_repr_parent_and_close() -> None:
    storage = MemoryStorage(secret_key="s")
    view = storage.scoped("a").scoped("b")
    assert isinstance(view, ScopedInternalLinksStorage)
    assert (view.parent, view.prefix, view.name) == (storage, "a/b/", "memory")
    assert repr(view) == (
        "ScopedInternalLinksStorage(MemoryStorage('memory://memory', name='memory'), prefix='a/b/')"
    )
    view.close()
    write(view, "x.txt", b"still open")
    assert [entry.name for entry in storage.list()] == ["a/b/x.txt"]


def test_a_backend_without_internal_links_gets_a_plain_view() -> None:
    view = DictStorage().scoped("t")
    assert type(view) is ScopedStorage
    write(view, "x.txt", b"dict")
    assert [entry.name for entry in view.parent.list()] == ["t/x.txt"]


def test_an_unclosed_writer_of_a_view_is_discarded_when_dropped() -> None:
    storage = MemoryStorage()
    writer = storage.scoped("t").open("x.txt", "wb")
    writer.write(b"never published")
    gc.disable()  # freed by its reference count alone, not by the cycle collector
    try:
        with pytest.warns(ResourceWarning, match="garbage-collected without close"):
            del writer
    finally:
        gc.enable()
    assert storage.list() == []
