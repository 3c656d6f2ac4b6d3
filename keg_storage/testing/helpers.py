"""What the conformance cases share: the base class that names the fixture a backend author
provides, and small helpers for writing and reading test data."""

from __future__ import annotations

import random

from keg_storage.backends.base import StorageBackend
from keg_storage.paths import RemotePath

MiB = 1024 * 1024


class BackendCases:
    """Base of every class of conformance cases.

    A subclass (its name starting with ``Test``, so that pytest collects it) needs a pytest
    fixture named ``storage`` that yields a fresh, empty backend for each test, defined in the
    subclass or in a ``conftest.py``. It may override :meth:`leftovers` so that the cases about
    aborted and discarded writes also check that no temporary state stays behind.
    """

    def leftovers(self, storage: StorageBackend) -> list[str]:
        """Temporary state of unfinished writes that ``storage.list()`` does not show (temp
        files on disk, multipart uploads), one description each; the cases assert it is empty
        once a write was aborted. The default sees nothing: override it where the backend's
        service can be inspected from outside."""
        return []


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible test data."""
    return random.Random(seed).randbytes(size)


def write(storage: StorageBackend, path: RemotePath, data: bytes) -> None:
    """Store ``data`` at ``path`` through ``open(path, 'wb')``."""
    with storage.open(path, "wb") as file:
        file.write(data)


def read(storage: StorageBackend, path: RemotePath) -> bytes:
    """The whole content of ``path``, read through ``open(path, 'rb')``."""
    with storage.open(path, "rb") as file:
        return file.read()


def names(storage: StorageBackend, path: RemotePath = "", *, recursive: bool = True) -> list[str]:
    """The names ``storage.list(path, recursive=recursive)`` gives, in its order."""
    return [entry.name for entry in storage.list(path, recursive=recursive)]
