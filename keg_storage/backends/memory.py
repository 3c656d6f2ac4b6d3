"""MemoryStorage: the whole contract in a sorted dict, thread-safe, for tests of applications."""

from __future__ import annotations

import hashlib
import io
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import arrow
from sortedcontainers import SortedDict

from ..errors import FileExistsInStorageError, PreconditionFailedError
from ..secrets import Secret, hold
from .base import FILE_EXISTS, PRECONDITION_FAILED, FileMode, FileStat, ListEntry
from .conditions import ALWAYS, Capabilities, WriteCondition
from .links import InternalLinksStorageBackend, SecretKey
from .listing import DEFAULT_PAGE_SIZE
from .streams import WrappedFile


@dataclass(frozen=True)
class _StoredFile:
    data: bytes
    last_modified: arrow.Arrow
    content_type: str | None

    @property
    def etag(self) -> str:
        return f'"{hashlib.md5(self.data, usedforsecurity=False).hexdigest()}"'


class MemoryFile(WrappedFile):
    """A file held in memory; writes are published to the store on ``close()``."""

    def __init__(
        self,
        storage: MemoryStorage,
        path: str,
        mode: FileMode,
        initial: bytes,
        content_type: str | None,
        condition: WriteCondition = ALWAYS,
    ) -> None:
        super().__init__(mode)
        self.storage = storage
        self.path = path
        self.content_type = content_type
        self.condition = condition
        self.buffer = io.BytesIO(initial)
        self.fp = self.buffer

    def _finish(self) -> None:
        if self.writable():
            self.storage.store(
                self.path, self.buffer.getvalue(), self.content_type, condition=self.condition
            )
        self.buffer.close()

    def _discard(self) -> None:
        self.buffer.close()


class MemoryStorage(InternalLinksStorageBackend):
    """Files in a dict of this process; links are internal links served by ``LinkViewMixin``.
    Conditional writes are decided under the store's lock at the moment of publishing.

    The dict is sorted (``sortedcontainers.SortedDict``), so a listing reads its keys in order
    a page at a time, each page under the lock, without copying the key set."""

    capabilities = Capabilities(
        read_write=True,
        conditional_create=True,
        conditional_replace=True,
        server_side_copy=True,
        internal_links=True,
        multi_operation_links=True,
    )
    ordered_listing = True
    listing_time_precision = 0.001
    etag_is_md5 = True

    def __init__(
        self,
        name: str = "memory",
        *,
        linked_endpoint: str | None = None,
        secret_key: SecretKey | None = None,
    ) -> None:
        held: Secret[SecretKey] | None = hold(secret_key)
        del secret_key  # no frame of ours holds it in plain form
        super().__init__(linked_endpoint=linked_endpoint, secret_key=held, name=name)
        self._files: SortedDict[str, _StoredFile] = SortedDict()
        self._lock = threading.Lock()

    def store(
        self,
        key: str,
        data: bytes,
        content_type: str | None = None,
        *,
        condition: WriteCondition = ALWAYS,
    ) -> None:
        """Store ``data`` under the key ``key`` at once (what closing a writer publishes), if
        ``condition`` holds then: decided under the lock, so of concurrent create-only writers
        exactly one publishes."""
        with self._lock:
            self._check_condition(key, condition)
            self._files[key] = _StoredFile(data, arrow.utcnow(), content_type)

    def _check_condition(self, key: str, condition: WriteCondition) -> None:
        """Raise unless ``condition`` holds for ``key`` now (the caller holds the lock)."""
        current = self._files.get(key)
        if not condition.overwrite and current is not None:
            raise FileExistsInStorageError(FILE_EXISTS, backend=self, path=key)
        if condition.if_match is not None and (
            current is None or current.etag != condition.if_match
        ):
            raise PreconditionFailedError(PRECONDITION_FAILED, backend=self, path=key)

    def _lookup(self, key: str) -> _StoredFile:
        with self._lock:
            stored = self._files.get(key)
        if stored is None:
            raise self._not_found(key)
        return stored

    def _list(self, prefix: str, recursive: bool) -> Iterator[ListEntry]:
        """The keys under ``prefix`` in order, a page at a time: each page is read under the lock
        from where the last one ended, so writes may go on between pages (as on S3, a key
        written behind the listing's position is not seen). One level: the first key below a
        sub-directory gives its entry, and the keys after it inside the sub-directory are
        skipped (by the next page's start, past them)."""
        start, inclusive = prefix, True
        directory = None
        while True:
            page = self._page(start, inclusive)
            for key, stored in page:
                if not key.startswith(prefix):
                    return
                if directory is not None and key.startswith(directory):
                    continue
                head, slash, _ = key[len(prefix) :].partition("/")
                if slash and not recursive:
                    directory = prefix + head + slash
                    yield ListEntry(directory, None, 0)
                    continue
                yield ListEntry(key, stored.last_modified, len(stored.data))
            if len(page) < (self.list_page_size or DEFAULT_PAGE_SIZE):
                return
            last = page[-1][0]
            if directory is not None and last.startswith(directory):
                start, inclusive = directory[:-1] + "0", True  # "0" follows "/": past its keys
            else:
                start, inclusive = last, False

    def _page(self, start: str, inclusive: bool) -> list[tuple[str, _StoredFile]]:
        """The next page of keys from ``start``, read under the lock."""
        size = self.list_page_size or DEFAULT_PAGE_SIZE
        with self._lock:
            keys = self._files.irange(start, inclusive=(inclusive, True))
            return [(key, self._files[key]) for key in itertools.islice(keys, size)]

    def _open(
        self,
        key: str,
        mode: FileMode,
        extra_args: dict[str, Any],
        condition: WriteCondition = ALWAYS,
    ) -> MemoryFile:
        if FileMode.read in mode:
            stored = self._lookup(key)
            return MemoryFile(self, key, mode, stored.data, stored.content_type)
        return MemoryFile(self, key, mode, b"", extra_args.get("ContentType"), condition)

    def _stat(self, key: str) -> FileStat:
        stored = self._lookup(key)
        return FileStat(len(stored.data), stored.last_modified, stored.etag, stored.content_type)

    def _delete(self, key: str) -> None:
        with self._lock:
            self._files.pop(key, None)

    def _copy(self, key: str, new_key: str, overwrite: bool = True) -> None:
        stored = self._lookup(key)
        condition = WriteCondition(overwrite=overwrite)
        self.store(new_key, stored.data, stored.content_type, condition=condition)

    def _move(self, key: str, new_key: str, overwrite: bool = True) -> None:
        with self._lock:
            stored = self._files.get(key)
            if stored is None:
                raise self._not_found(key)
            self._check_condition(new_key, WriteCondition(overwrite=overwrite))
            self._files[new_key] = self._files.pop(key)

    def _delete_many(self, keys: list[str]) -> dict[str, Exception]:
        """Under the lock at once."""
        with self._lock:
            for key in keys:
                self._files.pop(key, None)
        return {}
