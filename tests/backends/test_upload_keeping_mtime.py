"""``upload_keeping_mtime``: each backend keeps a file's modification time the way rclone does,
checked where a user (or rclone) would see it: the file's own time on LocalFS and SFTP, the
metadata ``mtime`` on S3 and Azure."""

from __future__ import annotations

import io
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import arrow
import pytest

from keg_storage import LocalFSStorage, MemoryStorage, StorageBackend

MOMENT = arrow.get(1_000_000_000.25)
LATER = 1_500_000_000


def test_localfs_publishes_the_file_with_its_time_over_a_newer_one(
    backend_localfs: LocalFSStorage,
) -> None:
    """The time is the source's to the microsecond, even over a file changed later (a plain
    write would be given a time after that file's)."""
    target = backend_localfs.root / "dir" / "a.txt"
    backend_localfs.upload(io.BytesIO(b"newer"), "dir/a.txt")
    os.utime(target, (LATER, LATER))

    backend_localfs.upload_keeping_mtime(io.BytesIO(b"older"), "dir/a.txt", MOMENT)

    assert target.read_bytes() == b"older"
    assert target.stat().st_mtime_ns == 1_000_000_000_250_000_000
    assert backend_localfs.stat("dir/a.txt").last_modified == MOMENT
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]  # no temp file left


def test_localfs_keeps_the_time_of_a_local_file_copied_by_the_kernel(
    backend_localfs: LocalFSStorage, tmp_path: Path
) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024))
    with source.open("rb") as local:
        backend_localfs.upload_keeping_mtime(local, "big.bin", datetime(2001, 9, 9, 1, 46, 40))

    published = backend_localfs.root / "big.bin"
    assert published.read_bytes() == source.read_bytes()
    assert published.stat().st_mtime == 1_000_000_000


def test_a_scoped_localfs_keeps_the_time_inside_its_scope(
    backend_localfs: LocalFSStorage,
) -> None:
    view = backend_localfs.scoped("tenant")
    assert view.keeps_mtime and view.listing_time_precision == 0.001

    view.upload_keeping_mtime(io.BytesIO(b"x"), "a.txt", 1_000_000_000)

    assert (backend_localfs.root / "tenant" / "a.txt").stat().st_mtime == 1_000_000_000


def test_sftp_publishes_the_file_with_its_time_in_whole_seconds(
    backend_sftp: Any, tmp_path: Path
) -> None:
    backend_sftp.upload(io.BytesIO(b"newer"), "a.txt")
    data = os.urandom(2 * 1024 * 1024 + 5)  # several pipelined writes, a partial last one

    backend_sftp.upload_keeping_mtime(io.BytesIO(data), "a.txt", MOMENT)

    published = Path(backend_sftp.base_path) / "a.txt"
    assert published.read_bytes() == data
    assert published.stat().st_mtime == 1_000_000_000
    assert backend_sftp.stat("a.txt").last_modified == arrow.get(1_000_000_000)
    assert [p.name for p in published.parent.iterdir()] == ["a.txt"]


def test_s3_stores_the_time_as_rclone_does(backend_s3: Any, s3_client: Any, s3_bucket: str) -> None:
    backend_s3.upload_keeping_mtime(io.BytesIO(b"data"), "a.txt", MOMENT)

    head = s3_client.head_object(Bucket=s3_bucket, Key="a.txt")
    assert head["Metadata"] == {"mtime": "1000000000.250000"}
    assert backend_s3.stat("a.txt").size == 4


def test_azure_stores_the_time_as_rclone_does(backend_azure: Any, azure_container: Any) -> None:
    moment = datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=timezone.utc)
    backend_azure.upload_keeping_mtime(io.BytesIO(b"data"), "a.txt", moment)

    properties = azure_container.get_blob_client("a.txt").get_blob_properties()
    assert properties.metadata == {"mtime": "2023-11-14T22:13:20.250000Z"}


@pytest.mark.parametrize(
    ("kind", "keeps", "precision", "md5"),
    [
        ("localfs", True, 0.001, False),
        ("sftp", True, 1.0, False),
        ("s3", False, 1.0, True),
        ("azure", False, 1.0, False),
        ("memory", False, 0.001, True),
    ],
)
def test_what_each_backend_declares(
    request: pytest.FixtureRequest, kind: str, keeps: bool, precision: float, md5: bool
) -> None:
    storage: StorageBackend = request.getfixturevalue(f"backend_{kind}")
    assert (storage.keeps_mtime, storage.listing_time_precision, storage.etag_is_md5) == (
        keeps,
        precision,
        md5,
    )


def test_a_store_without_times_or_metadata_just_uploads(backend_memory: MemoryStorage) -> None:
    backend_memory.upload_keeping_mtime(io.BytesIO(b"data"), "a.txt", MOMENT)

    with backend_memory.open("a.txt", "rb") as stored:
        assert stored.read() == b"data"
    assert backend_memory.stat("a.txt").last_modified > MOMENT  # its own upload time
