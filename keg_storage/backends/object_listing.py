"""Lazy listings of S3 and Azure (CONTRACT §11): the services' pages, one request at a time as
they are consumed, put in listing order by :func:`.listing.reordered`.

A flat (recursive) listing is one paginated request per 1,000 (S3) or 5,000 (Azure) keys, in
the service's key order, the next page requested while the current one is consumed.
S3-compatible stores built on a file system (SeaweedFS) order keys as a walk of directories
sorted by bare name (``a/b`` before ``a b``), which no bounded buffer can repair: there a
recursive listing walks directories itself, one delimited listing each.
"""

from __future__ import annotations

import collections
import datetime
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import arrow

from .azure_list_pages import LastModified, list_blobs_page, page_entries
from .files import ListEntry
from .listing import is_directory, reordered

UTC = datetime.timezone.utc
S3_PAGE_SIZE = 1000
"""Keys per page of ``list_objects_v2`` (the service's most and default)."""
T = TypeVar("T")

Pages = Callable[[str, bool], Iterator[list[ListEntry]]]
"""Reads the listing of a prefix (flat, or one level with ``True``) page by page."""


def modified(moment: datetime.datetime) -> arrow.Arrow:
    """The service's aware datetime as a UTC Arrow (a quarter of ``arrow.get(...).to('UTC')``'s
    cost, which counts at a million entries)."""
    return arrow.Arrow.fromdatetime(moment.astimezone(UTC))


class Modified:
    """:func:`modified` for the entries of a listing, the previous Arrow again where a moment
    repeats (objects written in the same second, often neighbours): converting a dateutil zone
    (``tzutc`` from S3Storage's clients, ``tzlocal`` from botocore's own parser) costs as much
    as the rest of an entry."""

    def __init__(self) -> None:
        self._moment: datetime.datetime | None = None
        self._arrow = arrow.Arrow(1970, 1, 1, tzinfo=UTC)

    def __call__(self, moment: datetime.datetime) -> arrow.Arrow:
        previous = self._moment
        # With one tzinfo, == compares the fields without converting; fold tells apart the
        # two moments of an hour that a change of clocks repeats.
        if (
            previous is None
            or moment.tzinfo is not previous.tzinfo
            or moment.fold != previous.fold
            or moment != previous
        ):
            self._arrow = modified(moment)
            self._moment = moment
        return self._arrow


def read_ahead(pages: Iterator[T], executor: Executor) -> Iterator[T]:
    """``pages``, the next one requested in ``executor`` while the caller works through the
    current one (one page ahead: memory stays two pages)."""
    upcoming = executor.submit(next, pages, None)
    while (page := upcoming.result()) is not None:
        upcoming = executor.submit(next, pages, None)
        yield page


def first_page(pages: Iterator[list[ListEntry]]) -> Iterator[list[ListEntry]]:
    """``pages`` with its first page already fetched (by the thread that calls this)."""
    return itertools.chain([next(pages, [])], pages)


@dataclass(frozen=True)
class Walk:
    """How :func:`walk` reads: ``pages`` of a directory, fetched ahead in ``executor``, the
    first pages of up to ``directories`` sub-directories among the next ``entries`` entries."""

    pages: Pages
    executor: Executor
    directories: int
    entries: int


def walk(how: Walk, prefix: str, recursive: bool) -> Iterator[ListEntry]:
    """The entries under ``prefix`` from one-level listings, in listing order: a sub-directory
    is listed (depth first) where its name sorts, while the first pages of the next ones are
    fetched (memory: a few pages per level)."""
    return _walk(how, first_page(how.pages(prefix, True)), recursive)


def _walk(how: Walk, listing: Iterator[list[ListEntry]], recursive: bool) -> Iterator[ListEntry]:
    entries = reordered(listing)
    if not recursive:
        yield from entries
        return
    upcoming: collections.deque[tuple[ListEntry, Future[Any] | None]] = collections.deque()
    fetching = 0

    def full() -> bool:
        return fetching >= how.directories or len(upcoming) >= how.entries

    for entry in itertools.chain(entries, [None]):
        if entry is not None:
            future = None
            if is_directory(entry):
                future = how.executor.submit(first_page, how.pages(entry.name, True))
                fetching += 1
            upcoming.append((entry, future))
        while upcoming and (entry is None or full()):
            item, future = upcoming.popleft()
            if future is None:
                yield item
                continue
            fetching -= 1
            yield from _walk(how, future.result(), recursive)


# -- S3 ------------------------------------------------------------------------------------------


def s3_pages(storage: Any, prefix: str, one_level: bool) -> Iterator[list[ListEntry]]:
    """The entries of ``list_objects_v2`` pages under ``prefix``: files (folder markers, keys
    ending in ``/``, are not files) and, ``one_level``, the common prefixes as directories."""
    arguments: dict[str, Any] = {"Bucket": storage.bucket, "Prefix": prefix}
    if one_level:
        arguments["Delimiter"] = "/"
    if storage.list_page_size:
        arguments["PaginationConfig"] = {"PageSize": storage.list_page_size}
    last_modified = Modified()
    for page in storage.client.get_paginator("list_objects_v2").paginate(**arguments):
        entries = [
            ListEntry(obj["Key"], last_modified(obj["LastModified"]), obj["Size"])
            for obj in page.get("Contents", ())
            if not obj["Key"].endswith("/")
        ]
        entries.extend(
            ListEntry(common["Prefix"], None, 0) for common in page.get("CommonPrefixes", ())
        )
        yield entries


def s3_checked_pages(storage: Any, prefix: str, one_level: bool) -> Iterator[list[ListEntry]]:
    """:func:`s3_pages`, less the directories that hold no file (only folder markers, or
    emptied on a store that keeps directories) where ``storage.check_directories`` asks: each
    page's directories are checked in parallel before the page is given."""
    pages = s3_pages(storage, prefix, one_level)
    if not (one_level and storage.check_directories):
        yield from pages
        return
    with ThreadPoolExecutor(storage.max_concurrency, "keg-storage-list") as executor:
        for page in pages:
            directories = [entry.name for entry in page if is_directory(entry)]
            empty = {
                name
                for name, holds in zip(
                    directories, executor.map(storage._holds_files, directories), strict=True
                )
                if not holds
            }
            yield [entry for entry in page if entry.name not in empty]


def s3_listing(storage: Any, prefix: str, recursive: bool) -> Iterator[ListEntry]:
    """S3Storage's listing: flat where the service orders keys as Python does (AWS: by UTF-8
    bytes), else (``endpoint_url``: an S3-compatible store) by :func:`walk`; either reads
    ahead in ``max_concurrency`` threads."""
    with ThreadPoolExecutor(storage.max_concurrency, "keg-storage-list") as executor:
        if recursive and storage.endpoint_url is None:
            yield from reordered(read_ahead(s3_pages(storage, prefix, False), executor))
            return
        # A recursive walk checks no directory: one that holds no file lists nothing anyway.
        read = s3_pages if recursive else s3_checked_pages
        pages: Pages = lambda prefix, one_level: read(storage, prefix, one_level)  # noqa: E731
        page_size = storage.list_page_size or S3_PAGE_SIZE
        yield from walk(
            Walk(pages, executor, storage.max_concurrency, page_size), prefix, recursive
        )


# -- Azure ---------------------------------------------------------------------------------------


def azure_pages(
    container: Any, prefix: str, one_level: bool, page_size: int | None
) -> Iterator[list[ListEntry]]:
    """The entries of List Blobs pages under ``prefix`` (one level: with the delimiter ``/``):
    blobs (folder markers, names ending in ``/``, are not files) and blob prefixes as
    directories, read from each page's XML (:mod:`.azure_list_pages`)."""
    parameters = {"restype": "container", "comp": "list"}
    if prefix:
        parameters["prefix"] = prefix
    if one_level:
        parameters["delimiter"] = "/"
    if page_size:
        parameters["maxresults"] = str(page_size)
    last_modified = LastModified()
    while True:
        page = list_blobs_page(container, parameters)
        entries = page_entries(page, last_modified)
        marker = page.findtext("NextMarker")
        del page  # the decoded XML, some 10 MiB a page of 5,000: not kept while entries wait
        yield entries
        if not marker:
            return
        parameters["marker"] = marker


def azure_listing(
    container: Any, prefix: str, recursive: bool, page_size: int | None
) -> Iterator[ListEntry]:
    """AzureStorage's listing, flat or one level, in listing order, a page read ahead."""
    with ThreadPoolExecutor(1, "keg-storage-list") as executor:
        pages = azure_pages(container, prefix, not recursive, page_size)
        yield from reordered(read_ahead(pages, executor))
