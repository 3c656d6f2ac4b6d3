"""keg_storage.backends.listing.reordered: the orders services were seen to page in, turned into
``list()``'s order. The servers of the test suite show one instance of each (tests/conformance
test_listing); here every arrangement of a generated set of keys is tried."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from keg_storage.backends.files import ListEntry
from keg_storage.backends.listing import reordered

# A key's segments hold no "/" (keys are normalised: no empty segment, none ending in "/").
SEGMENT = st.text(alphabet="-.0aA é\uff21\U0001f600~", min_size=1, max_size=3).filter(
    lambda segment: segment not in (".", "..")
)
KEYS = st.lists(st.lists(SEGMENT, min_size=1, max_size=3).map("/".join), unique=True, max_size=30)


def utf16(name: str) -> bytes:
    return name.encode("utf-16-be")


def bare(name: str) -> str:
    return name.rstrip("/")


def one_level(keys: list[str]) -> list[ListEntry]:
    """The root's children: files, and directories named with their trailing ``/``."""
    children = {key.split("/")[0] + ("/" if "/" in key else "") for key in keys}
    return [ListEntry(name, None, 0) for name in children]


def pages_of(entries: list[ListEntry], size: int) -> list[list[ListEntry]]:
    return [entries[start : start + size] for start in range(0, len(entries), size)]


def service(
    entries: list[ListEntry], order: Callable[[str], object], size: int, prefixes_first: bool
) -> list[list[ListEntry]]:
    """``entries`` paged as a service does: sorted by ``order``, ``size`` a page, and with a
    page's directories put before its files when ``prefixes_first`` (the Azure SDK)."""
    pages = pages_of(sorted(entries, key=lambda entry: order(entry.name)), size)
    if prefixes_first:
        pages = [sorted(page, key=lambda entry: not entry.name.endswith("/")) for page in pages]
    return pages


ORDERS: dict[str, Callable[[str], object]] = {
    "full name (AWS)": str,
    "UTF-16 (Azurite)": utf16,
    "bare directory name (SeaweedFS)": bare,
    "bare name, UTF-16": lambda name: utf16(bare(name)),
}


@settings(max_examples=300, deadline=None)
@given(keys=KEYS, size=st.integers(1, 7), prefixes_first=st.booleans())
def test_reordered_gives_list_order_whatever_the_service_order(
    keys: list[str], size: int, prefixes_first: bool
) -> None:
    flat = [ListEntry(key, None, 0) for key in keys]
    top = one_level(keys)
    for name, order in ORDERS.items():
        for entries in (flat, top):
            pages = service(entries, order, size, prefixes_first)
            got = [entry.name for entry in reordered(pages)]
            assert got == sorted(entry.name for entry in entries), name


def test_reordered_holds_only_what_arrives_early() -> None:
    """In full-name order nothing is held: each entry comes out before the next page is read."""
    pages_read = []

    def pages() -> object:
        for index in range(3):
            pages_read.append(index)
            yield [ListEntry(f"k{index}{letter}", None, 0) for letter in "ab"]

    entries = reordered(pages())  # type: ignore[arg-type]
    assert next(entries).name == "k0a"
    assert pages_read == [0]
