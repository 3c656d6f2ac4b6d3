"""What the conformance kit (:mod:`keg_storage.testing`) needs from this repository's backends
besides the ``storage`` fixture of conftest.py: a look at their temporary state from outside."""

from __future__ import annotations

import os
from typing import Any

from keg_storage.backends.base import StorageBackend
from keg_storage.backends.scoped import ScopedStorage
from keg_storage.testing import BackendCases, names


def leftovers(storage: StorageBackend) -> list[str]:
    """Temporary state of unfinished writes, seen from outside the backend: files on disk that
    the listing does not show (LocalFS, and SFTP, whose test server shares this disk) and S3
    multipart uploads. Azure keeps uncommitted blocks by design (CONTRACT §3), Memory nothing.
    A scoped view's are its backend's."""
    if isinstance(storage, ScopedStorage):
        return leftovers(storage.parent)
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


class FiveBackends(BackendCases):
    """The kit's cases on the backends of tests/fixtures (the ``storage`` fixture of
    conftest.py), with their temporary state checked by :func:`leftovers`."""

    def leftovers(self, storage: StorageBackend) -> list[str]:
        return leftovers(storage)
