"""Small helpers shared by the conformance tests."""

from __future__ import annotations

import random

from keg_storage.backends.base import StorageBackend

MiB = 1024 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible test data."""
    return random.Random(seed).randbytes(size)


def write(storage: StorageBackend, path: str, data: bytes) -> None:
    with storage.open(path, "wb") as file:
        file.write(data)


def read(storage: StorageBackend, path: str) -> bytes:
    with storage.open(path, "rb") as file:
        return file.read()


def names(storage: StorageBackend, path: str = "", *, recursive: bool = True) -> list[str]:
    return [entry.name for entry in storage.list(path, recursive=recursive)]
