"""MemoryStorage: the whole contract in a dict, thread-safe, for tests of applications."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import arrow

from ..secrets import Secret, hold
from .base import FileMode, FileStat, ListEntry
from .links import InternalLinksStorageBackend, SecretKey
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
    ) -> None:
        super().__init__(mode)
        self.storage = storage
        self.path = path
        self.content_type = content_type
        self.buffer = io.BytesIO(initial)
        self.fp = self.buffer

    def _finish(self) -> None:
        if self.writable():
            self.storage.store(self.path, self.buffer.getvalue(), self.content_type)
        self.buffer.close()

    def _discard(self) -> None:
        self.buffer.close()


class MemoryStorage(InternalLinksStorageBackend):
    """Files in a dict of this process; links are internal links served by ``LinkViewMixin``."""

    supports_read_write = True

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
        self._files: dict[str, _StoredFile] = {}
        self._lock = threading.Lock()

    def store(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store ``data`` under the key ``key`` at once (what closing a writer publishes)."""
        with self._lock:
            self._files[key] = _StoredFile(data, arrow.utcnow(), content_type)

    def _lookup(self, key: str) -> _StoredFile:
        with self._lock:
            stored = self._files.get(key)
        if stored is None:
            raise self._not_found(key)
        return stored

    def _list(self, prefix: str, recursive: bool) -> Iterable[ListEntry]:
        with self._lock:
            files = [(k, v) for k, v in self._files.items() if k.startswith(prefix)]
        directories = set()
        for key, stored in files:
            rest = key[len(prefix) :]
            if not recursive and "/" in rest:
                directories.add(prefix + rest.split("/", 1)[0] + "/")
                continue
            yield ListEntry(key, stored.last_modified, len(stored.data))
        for directory in directories:
            yield ListEntry(directory, None, 0)

    def _open(self, key: str, mode: FileMode, extra_args: dict[str, Any]) -> MemoryFile:
        if FileMode.read in mode:
            stored = self._lookup(key)
            return MemoryFile(self, key, mode, stored.data, stored.content_type)
        return MemoryFile(self, key, mode, b"", extra_args.get("ContentType"))

    def _stat(self, key: str) -> FileStat:
        stored = self._lookup(key)
        return FileStat(len(stored.data), stored.last_modified, stored.etag, stored.content_type)

    def _delete(self, key: str) -> None:
        with self._lock:
            self._files.pop(key, None)

    def _copy(self, key: str, new_key: str) -> None:
        stored = self._lookup(key)
        self.store(new_key, stored.data, stored.content_type)

    def _move(self, key: str, new_key: str) -> None:
        with self._lock:
            stored = self._files.pop(key, None)
            if stored is not None:
                self._files[new_key] = stored
        if stored is None:
            raise self._not_found(key)
