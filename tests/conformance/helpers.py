"""Small helpers shared by the conformance tests."""

from __future__ import annotations

import os
import random
from typing import Any

from keg_storage.backends.base import StorageBackend
from keg_storage.paths import RemotePath

MiB = 1024 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible test data."""
    return random.Random(seed).randbytes(size)


def write(storage: StorageBackend, path: RemotePath, data: bytes) -> None:
    with storage.open(path, "wb") as file:
        file.write(data)


def read(storage: StorageBackend, path: RemotePath) -> bytes:
    with storage.open(path, "rb") as file:
        return file.read()


def names(storage: StorageBackend, path: RemotePath = "", *, recursive: bool = True) -> list[str]:
    return [entry.name for entry in storage.list(path, recursive=recursive)]


def leftovers(storage: StorageBackend) -> list[str]:
    """Temporary state of unfinished writes, seen from outside the backend: files on disk that
    the listing does not show (LocalFS, and SFTP, whose test server shares this disk) and S3
    multipart uploads. Azure keeps uncommitted blocks by design (CONTRACT §3), Memory nothing."""
    kind = type(storage).__name__
    if kind in ("LocalFSStorage", "SFTPStorage"):
        root = str(storage.root if kind == "LocalFSStorage" else storage.base_path)  # type: ignore[attr-defined]
        listed = set(names(storage))
        return [
            name
            for directory, _, files in os.walk(root)
            for name in (os.path.relpath(os.path.join(directory, f), root) for f in files)
            if name not in listed
        ]
    if kind == "S3Storage":
        client: Any = storage.client  # type: ignore[attr-defined]
        uploads = client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])  # type: ignore[attr-defined]
        return [f"multipart upload of {upload['Key']}" for upload in uploads]
    return []
