"""The order of listings (CONTRACT §11), and what puts a service's pages into it lazily.

``list()`` sorts entries by name as Python compares strings (by code point, which is also the
byte order of UTF-8, S3's order). A directory entry of a non-recursive listing is named with its
trailing ``/``, so it sorts where the keys below it sort: ``a-b`` < ``a/`` < ``a0``. A lazy walk
of a directory tree must therefore order siblings with that ``/`` (:func:`entry_key`), not by
their bare names as a file system or ``sorted(os.listdir())`` would.

Services do not all keep that order, so the pages of S3-compatible stores and Azure go through
:func:`reordered`, which repairs it while holding only the entries that arrived early:

- SeaweedFS (a file system underneath) orders a directory by bare names: the prefix ``a/``
  arrives before ``a-b``, and a recursive listing walks directories in that order;
- the Azure SDK puts a page's prefixes (``BlobPrefix``) before its blobs, and Azurite, like
  .NET, orders names by UTF-16 code units: ``x😀`` before ``x\\uff21`` (a character above
  U+FFFF after U+E000..U+FFFF here).
"""

from __future__ import annotations

import heapq
import operator
import re
from collections.abc import Iterable, Iterator

from .files import ListEntry

__all__ = ["entry_key", "is_directory", "reordered", "sorted_entries"]

DEFAULT_PAGE_SIZE = 1000
"""Entries per page where a backend pages a listing itself (Memory) and none is set."""

_ABOVE_FFFF = re.compile("[\U00010000-\U0010ffff]")
_FIRST_AFTER_SURROGATES = "\ue000"
"""The lowest character that UTF-16 puts after every character above U+FFFF."""


def entry_key(entry: ListEntry) -> str:
    """Where an entry sorts: its name, a directory's with its trailing ``/``."""
    return entry.name


_NAME = operator.attrgetter("name")
""":func:`entry_key` as sorting calls it most cheaply (many thousands of entries a page)."""


def is_directory(entry: ListEntry) -> bool:
    """Whether ``entry`` is a directory of a non-recursive listing (its name ends in ``/``)."""
    return entry.name.endswith("/")


def sorted_entries(entries: Iterable[ListEntry]) -> list[ListEntry]:
    """``entries`` in listing order (what a walk does with one directory's entries)."""
    return sorted(entries, key=_NAME)


def lowest_key_after(entry: ListEntry) -> str:
    """A name no entry arriving after ``entry`` sorts below, whether the service orders by full
    name (AWS, Azure's documentation), by bare directory name (SeaweedFS) or by UTF-16 code
    units (Azurite): a directory's bare name, cut at its first character above U+FFFF (which
    UTF-16 puts before U+E000..U+FFFF) and completed with U+E000 there."""
    name = entry.name[:-1] if is_directory(entry) else entry.name
    astral = _ABOVE_FFFF.search(name)
    if astral is None:
        return name
    return name[: astral.start()] + _FIRST_AFTER_SURROGATES


def reordered(pages: Iterable[Iterable[ListEntry]]) -> Iterator[ListEntry]:
    """The entries of a service's pages in listing order, lazily.

    Each page is sorted (a page is small); an entry is held back until a later one proves that
    nothing sorting before it can still come (:func:`lowest_key_after`). Only entries that
    arrive early are held: a few directories, and names with characters above U+FFFF on a
    service that orders by UTF-16, so memory stays bounded by a page, not by the listing.
    """
    held: list[tuple[str, ListEntry]] = []
    for page in pages:
        for entry in sorted_entries(page):
            name = entry.name
            if not held and name.isascii() and not name.endswith("/"):
                yield entry  # the common case: nothing held, a file that sorts alike everywhere
                continue
            bound = lowest_key_after(entry)
            if not held and name <= bound:
                yield entry  # nothing held, nothing to hold
                continue
            heapq.heappush(held, (entry_key(entry), entry))
            while held and held[0][0] <= bound:
                yield heapq.heappop(held)[1]
    while held:
        yield heapq.heappop(held)[1]
