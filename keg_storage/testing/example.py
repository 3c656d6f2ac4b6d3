"""DictStorage: a small backend written from the primitives, shown on the "Writing a backend"
docs page and run through the conformance kit by the test suite.

It keeps files in a dict, so that what remains is what every backend writes: the four primitives
(``_list``, ``_open``, ``_stat``, ``_delete``), a reader, and a writer whose ``_finish``
publishes and whose ``_discard`` drops. Everything else (paths, ``get``/``put``, ``upload``/
``download`` with progress, ``copy``/``move``, ``exists``, ``glob``, text mode, errors) comes
from :class:`~keg_storage.StorageBackend`.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterable
from typing import Any

import arrow

from keg_storage import (
    Capabilities,
    FileMode,
    FileNotFoundInStorageError,
    FileStat,
    ListEntry,
    RemoteFile,
    StorageBackend,
)


class DictReader(RemoteFile):
    """A seekable reader over a snapshot of a stored file's bytes. The ``BytesIO`` refuses I/O
    once closed; :class:`~keg_storage.RemoteFile` refuses ``write`` on a reader."""

    def __init__(self, key: str, data: bytes) -> None:
        super().__init__(FileMode.read)
        self.path = key
        self.buffer = io.BytesIO(data)

    def read(self, size: int | None = -1) -> bytes:
        return self.buffer.read(-1 if size is None else size)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.buffer.seek(offset, whence)

    def tell(self) -> int:
        return self.buffer.tell()

    def _finish(self) -> None:
        self.buffer.close()

    def _discard(self) -> None:
        self.buffer.close()


class DictWriter(RemoteFile):
    """Collects what is written; ``close()`` publishes it whole (``_finish``), while ``abort()``,
    an exception in a ``with`` block or garbage collection drop it (``_discard``).
    :class:`~keg_storage.RemoteFile` refuses ``read`` on a writer."""

    def __init__(self, storage: DictStorage, key: str) -> None:
        super().__init__(FileMode.write)
        self.storage = storage
        self.path = key
        self.buffer = io.BytesIO()

    def write(self, data: Any) -> int:
        return self.buffer.write(data)

    def _finish(self) -> None:
        self.storage.publish(self.path, self.buffer.getvalue())
        self.buffer.close()

    def _discard(self) -> None:
        self.buffer.close()


class DictStorage(StorageBackend):
    """Files in a dict of this process, safe to share between threads. It writes unconditionally
    only, copies through this process and has no links: every capability is False, so
    ``overwrite=False``, ``if_match``, ``'r+'`` and ``link_to`` raise UnsupportedOperationError."""

    capabilities = Capabilities()

    def __init__(self, name: str = "dict") -> None:
        super().__init__(name)
        self.files: dict[str, tuple[bytes, arrow.Arrow]] = {}
        self.lock = threading.Lock()

    def publish(self, key: str, data: bytes) -> None:
        """Make ``data`` the content of ``key`` in one step (what a writer's close does)."""
        with self.lock:
            self.files[key] = (data, arrow.utcnow())

    def lookup(self, key: str) -> tuple[bytes, arrow.Arrow]:
        """The content and modification time of ``key``; the typed error if it is missing."""
        with self.lock:
            stored = self.files.get(key)
        if stored is None:
            raise FileNotFoundInStorageError(self, key)
        return stored

    def _list(self, prefix: str, recursive: bool) -> Iterable[ListEntry]:
        with self.lock:
            files = [(key, stored) for key, stored in self.files.items() if key.startswith(prefix)]
        directories = set()
        for key, (data, modified) in files:
            rest = key[len(prefix) :]
            if recursive or "/" not in rest:
                yield ListEntry(key, modified, len(data))
            else:
                directories.add(prefix + rest.split("/", 1)[0] + "/")
        for directory in directories:
            yield ListEntry(directory, None, 0)

    def _open(self, key: str, mode: FileMode, extra_args: dict[str, Any]) -> RemoteFile:
        if FileMode.read in mode:
            data, _ = self.lookup(key)
            return DictReader(key, data)
        return DictWriter(self, key)

    def _stat(self, key: str) -> FileStat:
        data, modified = self.lookup(key)
        etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
        return FileStat(len(data), modified, etag)

    def _delete(self, key: str) -> None:
        with self.lock:
            self.files.pop(key, None)
