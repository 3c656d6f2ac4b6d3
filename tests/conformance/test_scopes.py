"""CONTRACT §10: scoped views on every backend, and that a view shares its backend's clients
(no new connection, the same SDK client)."""

from __future__ import annotations

import io

from keg_storage.backends.s3 import S3Storage
from keg_storage.backends.sftp import SFTPStorage
from keg_storage.testing import ScopedCases, ScopedLinkCases, names, read, write

from .binding import FiveBackends


class TestScopes(FiveBackends, ScopedCases, ScopedLinkCases):
    pass


def test_an_sftp_view_opens_no_connection_of_its_own(backend_sftp: SFTPStorage) -> None:
    write(backend_sftp, "warm.txt", b"warm")
    opened = backend_sftp.pool_stats().connections_opened
    views = [backend_sftp.scoped(f"tenant-{number}") for number in range(5)]
    for view in views:
        view.upload(io.BytesIO(b"data"), "a.txt")
        assert read(view, "a.txt") == b"data"
        assert names(view) == ["a.txt"]
        view.close()
    assert backend_sftp.pool_stats().connections_opened == opened
    assert backend_sftp.pool_stats().connections >= 1  # closing the views closed nothing


def test_an_s3_view_uses_the_backends_client(backend_s3: S3Storage) -> None:
    view = backend_s3.scoped("tenant-a")
    write(view, "a.txt", b"data")
    with view.open("a.txt", "rb") as reader:
        assert reader.client is backend_s3.client  # type: ignore[attr-defined]
        assert reader.filename == "tenant-a/a.txt"  # type: ignore[attr-defined]
    view.close()
    assert backend_s3.client.head_object(Bucket=backend_s3.bucket, Key="tenant-a/a.txt")[
        "ContentLength"
    ] == len(b"data")
