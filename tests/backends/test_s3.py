"""S3-specific behaviour, checked against the SeaweedFS test server."""

from __future__ import annotations

import io
import logging
import random
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import boto3
import botocore.utils
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from keg_storage import (
    ShareLinkOperation,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
    UnsupportedOperationError,
)
from keg_storage.backends.s3 import S3Storage
from keg_storage.backends.s3_settings import parse_timestamp
from tests.faults.proxy import FaultProxy
from tests.fixtures.backend_s3 import make_storage
from tests.servers.seaweedfs import SeaweedFS, free_ports

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024


def data_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def small_parts(seaweedfs: SeaweedFS, s3_bucket: str) -> Iterator[S3Storage]:
    """An S3Storage with the smallest parts S3 allows, to get multipart uploads cheaply."""
    with make_storage(seaweedfs, s3_bucket, chunk_size=5 * MiB, max_concurrency=3) as storage:
        yield storage


@pytest.fixture
def small_parts_through_client(seaweedfs: SeaweedFS, s3_bucket: str) -> Iterator[S3Storage]:
    """``small_parts`` with every request through the client (``direct_requests=False``), for
    the tests that count the client's requests; tests/backends/test_s3_direct.py checks the
    requests sent without it."""
    with make_storage(
        seaweedfs, s3_bucket, chunk_size=5 * MiB, max_concurrency=3, direct_requests=False
    ) as storage:
        yield storage


def pending_uploads(client: S3Client, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


class CountRequests:
    """Counts the S3 operations a client sends, by name (a botocore event hook, no mock)."""

    def __init__(self, client: S3Client) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-call.s3", self._record)

    def _record(self, model: Any, params: dict[str, Any], **kwargs: Any) -> None:
        self.calls.append((model.name, params))

    def ranges(self) -> list[str]:
        return [p["headers"].get("Range", "") for name, p in self.calls if name == "GetObject"]


class TestServer:
    """The test server is a real S3 implementation: it checks signatures."""

    def test_objects_and_multipart_uploads(self, s3_client: S3Client, s3_bucket: str) -> None:
        s3_client.put_object(Bucket=s3_bucket, Key="dir/a.txt", Body=b"hello")
        assert s3_client.get_object(Bucket=s3_bucket, Key="dir/a.txt")["Body"].read() == b"hello"
        upload = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="big.bin")
        listed = s3_client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
        assert [u["UploadId"] for u in listed] == [upload["UploadId"]]
        s3_client.abort_multipart_upload(
            Bucket=s3_bucket, Key="big.bin", UploadId=upload["UploadId"]
        )
        assert "Uploads" not in s3_client.list_multipart_uploads(Bucket=s3_bucket)

    def test_wrong_secret_is_refused(self, seaweedfs: SeaweedFS, s3_bucket: str) -> None:
        client = boto3.client(
            "s3",
            endpoint_url=seaweedfs.endpoint_url,
            aws_access_key_id=seaweedfs.access_key,
            aws_secret_access_key="not-the-secret",
            region_name=seaweedfs.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        with pytest.raises(ClientError) as info:
            client.put_object(Bucket=s3_bucket, Key="a.txt", Body=b"x")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


class TestPresignedLinks:
    def test_download_link_with_a_plain_http_client(self, backend_s3: S3Storage) -> None:
        backend_s3.upload(io.BytesIO(b"report body"), "reports/q1 report.csv")
        url = backend_s3.link_to(
            "reports/q1 report.csv",
            "download",
            timedelta(minutes=5),
            output_path='Rapport année 1 "final".csv',
            content_type="text/csv",
        )
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
        response = requests.get(url, timeout=10)
        assert response.status_code == 200
        assert response.content == b"report body"
        assert response.headers["Content-Type"] == "text/csv"
        assert response.headers["Content-Disposition"] == (
            'attachment; filename="Rapport annee 1 \\"final\\".csv"; '
            "filename*=UTF-8''Rapport%20ann%C3%A9e%201%20%22final%22.csv"
        )

    def test_tampered_or_expired_download_link_is_refused(self, backend_s3: S3Storage) -> None:
        backend_s3.upload(io.BytesIO(b"secret"), "a.txt")
        backend_s3.upload(io.BytesIO(b"other"), "b.txt")
        url = backend_s3.link_to("a.txt", "download", timedelta(minutes=5))
        assert requests.get(url, timeout=10).status_code == 200
        tampered = url.replace("/a.txt?", "/b.txt?")
        assert requests.get(tampered, timeout=10).status_code == 403
        short = backend_s3.link_to("a.txt", "download", timedelta(seconds=1))
        time.sleep(2.5)
        assert requests.get(short, timeout=10).status_code == 403

    def test_upload_link_requires_the_signed_content_type(
        self, backend_s3: S3Storage, s3_client: S3Client
    ) -> None:
        url = backend_s3.link_to("in/box.bin", ShareLinkOperation.upload, timedelta(minutes=5))
        refused = requests.put(url, data=b"x", headers={"Content-Type": "text/plain"}, timeout=10)
        assert refused.status_code == 403
        assert not backend_s3.exists("in/box.bin")
        ok = requests.put(
            url, data=b"uploaded", headers={"Content-Type": "application/octet-stream"}, timeout=10
        )
        assert ok.status_code == 200
        with backend_s3.open("in/box.bin") as file:
            assert file.read() == b"uploaded"

        url = backend_s3.link_to(
            "in/page.html", "u", timedelta(minutes=5), content_type="text/html"
        )
        ok = requests.put(url, data=b"<p>", headers={"Content-Type": "text/html"}, timeout=10)
        assert ok.status_code == 200
        head = s3_client.head_object(Bucket=backend_s3.bucket, Key="in/page.html")
        assert head["ContentType"] == "text/html"

    def test_remove_link(self, backend_s3: S3Storage) -> None:
        backend_s3.upload(io.BytesIO(b"x"), "doomed.txt")
        url = backend_s3.link_to("doomed.txt", "remove", timedelta(minutes=5))
        assert requests.delete(url, timeout=10).status_code == 204
        assert not backend_s3.exists("doomed.txt")

    @pytest.mark.parametrize("operation", ["du", "ur", "dur", "download,remove"])
    def test_one_operation_per_link(self, backend_s3: S3Storage, operation: str) -> None:
        with pytest.raises(UnsupportedOperationError) as info:
            backend_s3.link_to("a.txt", operation, timedelta(minutes=5))
        assert isinstance(info.value, NotImplementedError)

    def test_longer_than_seven_days_is_refused(self, backend_s3: S3Storage) -> None:
        with pytest.raises(ValueError, match="7 days"):
            backend_s3.link_to("a.txt", "download", timedelta(days=8))


class TestMultipartWrites:
    def test_multipart_object_through_open_reads_back_identical(
        self, small_parts: S3Storage, s3_client: S3Client
    ) -> None:
        data = data_of(12 * MiB + 123, seed=1)
        with small_parts.open("big.bin", "wb") as file:
            for start in range(0, len(data), MiB):
                file.write(data[start : start + MiB])
        head = s3_client.head_object(Bucket=small_parts.bucket, Key="big.bin")
        assert head["ETag"].endswith('-3"')  # three parts: 5 + 5 + 2 MiB
        with small_parts.open("big.bin") as file:
            assert file.read() == data
        assert pending_uploads(s3_client, small_parts.bucket) == []

    def test_upload_is_created_only_when_a_part_is_full(
        self, small_parts: S3Storage, s3_client: S3Client
    ) -> None:
        with small_parts.open("lazy.bin", "wb") as file:
            file.write(b"x" * (5 * MiB - 1))
            assert pending_uploads(s3_client, small_parts.bucket) == []
            file.write(b"x" * 2)
            assert pending_uploads(s3_client, small_parts.bucket) == ["lazy.bin"]
        assert pending_uploads(s3_client, small_parts.bucket) == []
        assert small_parts.stat("lazy.bin").size == 5 * MiB + 1

    def test_small_and_empty_files_are_single_puts(
        self, small_parts: S3Storage, s3_client: S3Client
    ) -> None:
        counter = CountRequests(small_parts.client)
        with small_parts.open("empty.txt", "wb"):
            pass
        with small_parts.open("small.txt", "wb") as file:
            file.write(b"small")
        assert [name for name, _ in counter.calls] == ["PutObject", "PutObject"]
        assert small_parts.stat("empty.txt").size == 0

    def test_abort_leaves_no_multipart_upload(
        self, small_parts: S3Storage, s3_client: S3Client
    ) -> None:
        file = small_parts.open("aborted.bin", "wb")
        file.write(data_of(11 * MiB))
        assert pending_uploads(s3_client, small_parts.bucket) == ["aborted.bin"]
        file.abort()
        assert pending_uploads(s3_client, small_parts.bucket) == []
        assert not small_parts.exists("aborted.bin")

    def test_exception_in_with_block_leaves_no_multipart_upload(
        self, small_parts: S3Storage, s3_client: S3Client
    ) -> None:
        with pytest.raises(RuntimeError), small_parts.open("failed.bin", "wb") as file:
            file.write(data_of(11 * MiB))
            raise RuntimeError("boom")
        assert pending_uploads(s3_client, small_parts.bucket) == []
        assert not small_parts.exists("failed.bin")

    def test_failed_upload_leaves_no_multipart_upload(
        self, small_parts: S3Storage, s3_client: S3Client
    ) -> None:
        class Broken(io.RawIOBase):
            def __init__(self) -> None:
                self.served = 0

            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                if self.served >= 12 * MiB:
                    raise OSError("disk broke")
                view = memoryview(buffer)
                view[:] = b"y" * len(view)
                self.served += len(view)
                return len(view)

        with pytest.raises(OSError, match="disk broke"):
            small_parts.upload(io.BufferedReader(Broken(), MiB), "broken.bin")
        assert pending_uploads(s3_client, small_parts.bucket) == []
        assert not small_parts.exists("broken.bin")

    def test_extra_args_reach_the_object(self, small_parts: S3Storage, s3_client: S3Client) -> None:
        extra = {
            "ContentType": "text/csv",
            "Metadata": {"origin": "test"},
            "CacheControl": "no-cache",
        }
        with small_parts.open("small.csv", "wb", extra_args=extra) as file:
            file.write(b"a,b\n")
        with small_parts.open("large.csv", "wb", extra_args=extra) as file:
            file.write(b"a,b\n" * (2 * MiB))
        small_parts.upload(io.BytesIO(b"a,b\n"), "uploaded.csv", extra_args=extra)
        for key in ("small.csv", "large.csv", "uploaded.csv"):
            head = s3_client.head_object(Bucket=small_parts.bucket, Key=key)
            assert head["ContentType"] == "text/csv"
            assert head["Metadata"] == {"origin": "test"}
            assert head["CacheControl"] == "no-cache"
            assert small_parts.stat(key).content_type == "text/csv"


class TestReads:
    def test_seek_downloads_nothing_it_skips(self, small_parts: S3Storage) -> None:
        data = data_of(30 * MiB, seed=2)
        small_parts.upload(io.BytesIO(data), "large.bin")
        counter = CountRequests(small_parts.client)
        with small_parts.open("large.bin") as file:
            file.seek(-10, io.SEEK_END)
            assert file.read() == data[-10:]
            file.seek(12 * MiB + 5)
            assert file.read(100) == data[12 * MiB + 5 : 12 * MiB + 105]
        assert counter.ranges() == [
            f"bytes={25 * MiB}-{30 * MiB - 1}",
            f"bytes={10 * MiB}-{15 * MiB - 1}",
        ]

    def test_readinto_fills_the_buffer_across_ranges_and_stops_at_the_end(
        self, small_parts: S3Storage
    ) -> None:
        """What a copy loop into one reused buffer (sync into SFTP) gets: every byte once, in
        order, a buffer spanning two ranges filled whole, a short count at the end, then 0."""
        data = data_of(12 * MiB + 7, seed=5)
        small_parts.upload(io.BytesIO(data), "ranges.bin")
        buffer = bytearray(3 * MiB)
        with small_parts.open("ranges.bin") as file:
            file.seek(4 * MiB)  # the buffer spans the first and second ranges (5 MiB each)
            assert file.readinto(buffer) == 3 * MiB
            assert buffer == data[4 * MiB : 7 * MiB]
            file.seek(10 * MiB)
            assert file.readinto(memoryview(buffer)) == 2 * MiB + 7
            assert buffer[: 2 * MiB + 7] == data[10 * MiB :]
            assert file.readinto(buffer) == 0
            file.seek(0)
            copied = io.BytesIO()
            while count := file.readinto(buffer):
                copied.write(buffer[:count])
        assert copied.getvalue() == data

    def test_zipfile_reads_one_member_with_few_requests(self, small_parts: S3Storage) -> None:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            for index in range(4):
                zipped.writestr(f"member{index}.bin", data_of(4 * MiB, seed=index))
        small_parts.upload(io.BytesIO(archive.getvalue()), "archive.zip")
        counter = CountRequests(small_parts.client)
        with small_parts.open("archive.zip") as file, zipfile.ZipFile(file) as zipped:
            assert zipped.read("member3.bin") == data_of(4 * MiB, seed=3)
        assert len(counter.ranges()) <= 3

    def test_object_replaced_while_reading_is_an_error(self, small_parts: S3Storage) -> None:
        small_parts.upload(io.BytesIO(data_of(11 * MiB, seed=3)), "moving.bin")
        with small_parts.open("moving.bin") as file:
            file.read(10)
            small_parts.upload(io.BytesIO(data_of(11 * MiB, seed=4)), "moving.bin")
            file.seek(10 * MiB)
            with pytest.raises(StorageError, match="PreconditionFailed"):
                file.read(10)


def stored(storage: S3Storage, path: str) -> bytes:
    target = io.BytesIO()
    storage.download(path, target)
    return target.getvalue()


class TestTransferRequests:
    """A transfer costs the requests of the SDK's own calls and no more (issue 18)."""

    def test_download_and_get_of_a_small_object_are_one_get(
        self, small_parts_through_client: S3Storage, tmp_path: Any
    ) -> None:
        small_parts_through_client.upload(io.BytesIO(b"small body"), "small.txt")
        counter = CountRequests(small_parts_through_client.client)
        target = io.BytesIO()
        small_parts_through_client.download("small.txt", target)
        small_parts_through_client.get("small.txt", tmp_path / "small.txt")
        assert target.getvalue() == b"small body"
        assert (tmp_path / "small.txt").read_bytes() == b"small body"
        assert [name for name, _ in counter.calls] == ["GetObject", "GetObject"]

    def test_a_small_upload_sends_its_body_with_its_headers(
        self, seaweedfs: SeaweedFS, s3_bucket: str
    ) -> None:
        """No ``Expect: 100-continue`` (a round trip before the body) below 1 MiB through the
        client (where a direct upload that failed goes, and every upload with
        ``direct_requests=False``); above, the service may still refuse before the body is
        sent."""
        sent: list[tuple[str, Any]] = []

        def record(request: Any, **_: Any) -> None:
            sent.append((request.method, request.headers.get("Expect")))

        with make_storage(
            seaweedfs, s3_bucket, chunk_size=5 * MiB, direct_requests=False
        ) as storage:
            storage.client.meta.events.register("before-send.s3", record)
            large = data_of(6 * MiB, seed=3)
            storage.upload(io.BytesIO(b"x" * 4096), "small.bin")
            storage.upload(io.BytesIO(large), "large.bin")
            assert sent == [("PUT", None), ("PUT", b"100-continue")]
            assert stored(storage, "small.bin") == b"x" * 4096
            assert stored(storage, "large.bin") == large

    def test_exists_is_one_head(self, small_parts_through_client: S3Storage) -> None:
        backend_s3 = small_parts_through_client
        backend_s3.upload(io.BytesIO(b"here"), "here.txt")
        counter = CountRequests(backend_s3.client)
        assert backend_s3.exists("here.txt") is True
        assert backend_s3.exists("missing.txt") is False
        assert [name for name, _ in counter.calls] == ["HeadObject", "HeadObject"]

    def test_download_reads_ranges_without_a_head(
        self, small_parts_through_client: S3Storage
    ) -> None:
        data = data_of(11 * MiB, seed=5)
        small_parts_through_client.upload(io.BytesIO(data), "large.bin")
        counter = CountRequests(small_parts_through_client.client)
        target = io.BytesIO()
        small_parts_through_client.download("large.bin", target)
        assert target.getvalue() == data
        assert [name for name, _ in counter.calls] == ["GetObject"] * 3
        assert sorted(counter.ranges()) == [
            f"bytes=0-{5 * MiB - 1}",
            f"bytes={10 * MiB}-{11 * MiB - 1}",
            f"bytes={5 * MiB}-{10 * MiB - 1}",
        ]

    def test_download_of_an_empty_object(self, small_parts: S3Storage) -> None:
        small_parts.upload(io.BytesIO(b""), "empty.bin")
        target = io.BytesIO(b"")
        small_parts.download("empty.bin", target)
        assert target.getvalue() == b""

    def test_object_replaced_during_a_download_fails_cleanly(
        self, small_parts_through_client: S3Storage, s3_client: S3Client, tmp_path: Any
    ) -> None:
        """Replaced after the first GET: the other ranges are refused (If-Match), so ``get``
        raises and leaves the local file as it was, never a mix of two versions."""
        small_parts_through_client.upload(io.BytesIO(data_of(11 * MiB, seed=1)), "moving.bin")
        replaced: list[bool] = []

        def replace_once(**_: Any) -> None:
            if not replaced:
                replaced.append(True)
                s3_client.put_object(
                    Bucket=small_parts_through_client.bucket,
                    Key="moving.bin",
                    Body=data_of(11 * MiB, seed=2),
                )

        small_parts_through_client.client.meta.events.register(
            "after-call.s3.GetObject", replace_once
        )
        local = tmp_path / "moving.bin"
        local.write_bytes(b"before")
        with pytest.raises(StorageError, match="PreconditionFailed") as raised:
            small_parts_through_client.get("moving.bin", local)
        assert raised.value.path == "moving.bin"
        assert local.read_bytes() == b"before"
        assert list(tmp_path.iterdir()) == [local]

    def test_small_upload_and_put_are_one_put_object(
        self, small_parts_through_client: S3Storage, tmp_path: Any
    ) -> None:
        """Through the client (``direct_requests=False``; tests/backends/test_s3_direct.py
        has the direct requests)."""
        small_parts = small_parts_through_client
        local = tmp_path / "local.csv"
        local.write_bytes(b"a,b\n")
        counter = CountRequests(small_parts.client)
        senders: list[threading.Thread] = []
        small_parts.client.meta.events.register(
            "before-call.s3.PutObject", lambda **_: senders.append(threading.current_thread())
        )
        small_parts.upload(io.BytesIO(b"x" * 1000), "uploaded.bin")
        small_parts.put(local, "put.csv", extra_args={"ContentType": "text/csv"})
        assert [name for name, _ in counter.calls] == ["PutObject", "PutObject"]
        assert senders == [threading.current_thread()] * 2  # no transfer manager thread
        assert small_parts.stat("put.csv").content_type == "text/csv"
        assert [stored(small_parts, "uploaded.bin"), stored(small_parts, "put.csv")] == [
            b"x" * 1000,
            b"a,b\n",
        ]

    def test_upload_sends_what_is_left_from_the_position(self, small_parts: S3Storage) -> None:
        source = io.BytesIO(b"skipped|sent")
        source.seek(8)
        small_parts.upload(source, "rest.txt")
        assert stored(small_parts, "rest.txt") == b"sent"
        assert source.tell() == 12


class TestTimestamps:
    """The storage's clients read the service's timestamps with a parser of their own
    (:func:`keg_storage.backends.s3_settings.parse_timestamp`), giving what botocore's gives."""

    @pytest.mark.parametrize(
        "value",
        [
            "2026-12-05T03:08:46.123Z",
            "2026-12-05T03:08:46Z",
            "2026-12-05T03:08:46.1Z",
            "2026-12-05T03:08:46.123456Z",
            "1999-12-31T23:59:59.999Z",
            "Sat, 05 Dec 2026 03:08:46 GMT",
            "Sun, 29 Feb 2004 00:00:00 GMT",
            "2026-12-05T03:08:46+02:00",
            "2026-12-05 03:08:46",
            "1700000000",
            1700000000,
        ],
    )
    def test_the_same_moment_as_botocore(self, value: Any) -> None:
        parsed = parse_timestamp(value)
        expected = botocore.utils.parse_timestamp(value)
        assert parsed == expected
        assert parsed.utcoffset() == expected.utcoffset()

    @pytest.mark.parametrize(
        "value",
        ["2026-02-30T03:08:46Z", "Sat, 05 Foo 2026 03:08:46 GMT", "Mon, 31 Apr 2026 00:00:00 GMT"],
    )
    def test_botocore_refuses_what_it_cannot_read(self, value: str) -> None:
        with pytest.raises(ValueError) as expected:
            botocore.utils.parse_timestamp(value)
        with pytest.raises(ValueError) as refused:
            parse_timestamp(value)
        assert str(refused.value) == str(expected.value)

    def test_stat_and_listing_give_the_services_times(
        self, backend_s3: S3Storage, s3_client: S3Client, s3_bucket: str
    ) -> None:
        backend_s3.upload(io.BytesIO(b"one"), "dir/a.txt")
        backend_s3.upload(io.BytesIO(b"two"), "dir/b.txt")
        head = s3_client.head_object(Bucket=s3_bucket, Key="dir/a.txt")
        assert backend_s3.stat("dir/a.txt").last_modified == head["LastModified"]
        listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="dir/")["Contents"]
        assert [(e.name, e.last_modified) for e in backend_s3.list("dir")] == [
            (obj["Key"], obj["LastModified"]) for obj in listed
        ]


class TestServerSideCopy:
    def test_copy_makes_no_data_transfer(self, backend_s3: S3Storage) -> None:
        backend_s3.upload(io.BytesIO(b"copied"), "a.txt", extra_args={"ContentType": "text/x"})
        counter = CountRequests(backend_s3.client)
        backend_s3.copy("a.txt", "b.txt")
        assert [name for name, _ in counter.calls] == ["HeadObject", "CopyObject"]
        assert backend_s3.stat("b.txt").content_type == "text/x"

    def test_multipart_copy_above_the_threshold(
        self, small_parts: S3Storage, s3_client: S3Client
    ) -> None:
        data = data_of(11 * MiB, seed=5)
        small_parts.upload(
            io.BytesIO(data),
            "src.bin",
            extra_args={"ContentType": "video/x", "Metadata": {"a": "b"}},
        )
        small_parts.copy_threshold = 5 * MiB
        small_parts.copy("src.bin", "dst.bin")
        head = s3_client.head_object(Bucket=small_parts.bucket, Key="dst.bin")
        assert head["ETag"].endswith('-3"')
        assert head["ContentType"] == "video/x"
        assert head["Metadata"] == {"a": "b"}
        target = io.BytesIO()
        small_parts.download("dst.bin", target)
        assert target.getvalue() == data
        assert pending_uploads(s3_client, small_parts.bucket) == []


class TestErrors:
    def test_wrong_credentials_are_a_permission_error(
        self, seaweedfs: SeaweedFS, s3_bucket: str
    ) -> None:
        storage = S3Storage(
            s3_bucket,
            seaweedfs.region,
            seaweedfs.access_key,
            "wrong-secret",
            endpoint_url=seaweedfs.endpoint_url,
        )
        with pytest.raises(StoragePermissionError) as info:
            storage.list()
        assert isinstance(info.value.__cause__, ClientError)
        assert isinstance(info.value, PermissionError)
        with pytest.raises(StoragePermissionError) as info:
            storage.upload(io.BytesIO(b"x"), "a/b.txt")
        assert "a/b.txt" in str(info.value)
        assert "wrong-secret" not in str(info.value) + repr(storage)

    def test_unreachable_endpoint_is_a_connection_error(self) -> None:
        (port,) = free_ports(1)
        storage = S3Storage(
            "bucket-name",
            "us-east-1",
            "key",
            "secret",
            endpoint_url=f"http://127.0.0.1:{port}",
            max_attempts=2,
            connect_timeout=1,
        )
        with pytest.raises(StorageConnectionError) as info:
            storage.stat("a.txt")
        assert isinstance(info.value, ConnectionError)
        assert "a.txt" in str(info.value)

    def test_missing_bucket(self, seaweedfs: SeaweedFS) -> None:
        storage = make_storage(seaweedfs, "no-such-bucket-here")
        with pytest.raises(StorageError, match="bucket does not exist"):
            storage.list()

    def test_parts_below_five_mib_are_refused(self, seaweedfs: SeaweedFS) -> None:
        with pytest.raises(ValueError, match="5 MiB"):
            make_storage(seaweedfs, "any-bucket", chunk_size=MiB)

    def test_missing_boto3_names_the_extra(self) -> None:
        code = (
            "import sys\n"
            "sys.modules.update(boto3=None, botocore=None)\n"
            "import keg_storage\n"
            "from keg_storage.backends.s3 import S3Storage\n"
            "try:\n"
            "    S3Storage('bucket', 'us-east-1')\n"
            "except keg_storage.MissingDependencyError as exc:\n"
            "    print(exc)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert 'pip install "keg-storage[s3]"' in out


class TestConfiguration:
    def test_client_settings(self, backend_s3: S3Storage) -> None:
        config = backend_s3.client.meta.config
        assert config.signature_version == "s3v4"
        assert config.retries == {"mode": "standard", "total_max_attempts": 5}
        assert config.s3 == {"addressing_style": "path"}
        parsed = urllib.parse.urlparse(backend_s3.link_to("a.txt", "d", timedelta(minutes=1)))
        assert parsed.path == f"/{backend_s3.bucket}/a.txt"


class TestFaults:
    @pytest.mark.parametrize("cut", [1000, 3 * MiB, 7 * MiB])
    def test_streaming_read_survives_a_cut_body(
        self, s3_proxied: tuple[S3Storage, FaultProxy], cut: int
    ) -> None:
        storage, proxy = s3_proxied
        data = data_of(12 * MiB, seed=cut)
        storage.upload(io.BytesIO(data), "doc.bin")
        with storage.open("doc.bin") as file:
            proxy.cut_after(cut, "downstream")
            assert b"".join(file.iter_chunks(MiB)) == data
        assert not proxy.armed

    def test_download_survives_a_cut_body(
        self, s3_proxied: tuple[S3Storage, FaultProxy], caplog: pytest.LogCaptureFixture
    ) -> None:
        storage, proxy = s3_proxied
        data = data_of(12 * MiB, seed=7)
        storage.upload(io.BytesIO(data), "doc.bin")
        proxy.cut_after(6 * MiB, "downstream")
        target = io.BytesIO()
        caplog.set_level(logging.WARNING, "keg_storage.retry")
        storage.download("doc.bin", target)
        assert target.getvalue() == data
        assert not proxy.armed
        # Issue 14, point 3: the retry is logged, with its cause and endpoint.
        retries = [r.getMessage() for r in caplog.records if r.name == "keg_storage.retry"]
        assert len(retries) == 1
        assert re.fullmatch(
            rf"s3 's3': GET doc\.bin failed \((Connection reset by peer|the server closed the "
            rf"connection)\) at http://127\.0\.0\.1:{proxy.port}; retrying \(attempt 2 of 3\)",
            retries[0],
        ), retries

    @pytest.mark.parametrize("cut", [200, 2 * MiB, 6 * MiB])
    def test_cut_write_publishes_whole_or_nothing(
        self, s3_proxied: tuple[S3Storage, FaultProxy], s3_client: S3Client, cut: int
    ) -> None:
        storage, proxy = s3_proxied
        new = data_of(11 * MiB, seed=cut)
        s3_client.put_object(Bucket=storage.bucket, Key="doc.bin", Body=b"old")
        proxy.cut_after(cut, "upstream")
        try:
            with storage.open("doc.bin", "wb") as file:
                for start in range(0, len(new), MiB):
                    file.write(new[start : start + MiB])
        except StorageError:
            expected = b"old"
        else:
            expected = new
        body = s3_client.get_object(Bucket=storage.bucket, Key="doc.bin")["Body"].read()
        assert body == expected
        assert pending_uploads(s3_client, storage.bucket) == []

    def test_refused_connections_are_a_connection_error(
        self, s3_proxied: tuple[S3Storage, FaultProxy]
    ) -> None:
        storage, proxy = s3_proxied
        proxy.reset_all()
        proxy.refuse_new = True
        with pytest.raises(StorageConnectionError) as info:
            storage.upload(io.BytesIO(b"x"), "refused.txt")
        assert storage.name in str(info.value)
        proxy.clear()
        storage.upload(io.BytesIO(b"back"), "refused.txt")
        assert storage.stat("refused.txt").size == 4


# -- issue 14, point 10: checksums of boto3 >= 1.36 and S3-compatible stores ----------------


class SentHeaders:
    """The headers of every request a client sends (botocore's ``before-send`` event)."""

    def __init__(self, client: S3Client) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, **kwargs: Any) -> None:
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }
        self.requests.append((request.method, headers))

    def checksum_headers(self) -> list[str]:
        """Every header that carries or announces a flexible checksum, or a chunked body."""
        found = []
        for _, headers in self.requests:
            for name, value in headers.items():
                chunked = name == "content-encoding" and "aws-chunked" in value
                trailer = name == "x-amz-content-sha256" and "TRAILER" in value
                if name.startswith(("x-amz-checksum-", "x-amz-sdk-checksum", "x-amz-trailer")):
                    found.append(name)
                elif chunked or trailer:
                    found.append(f"{name}: {value}")
        return found


def test_endpoint_url_stores_get_checksums_only_when_required(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Any
) -> None:
    """boto3 >= 1.36 computes and checks CRC checksums whenever S3 supports them, which broke
    MinIO, Ceph and others (boto3#4392): with an endpoint_url, only where S3 requires them. The
    round trip (a single PUT, a multipart upload, ranged reads) works and sends none."""
    data = data_of(11 * MiB, seed=10)
    with make_storage(
        seaweedfs, s3_bucket, chunk_size=5 * MiB, multipart_threshold=5 * MiB
    ) as storage:
        config = storage.client.meta.config
        assert config.request_checksum_calculation == "when_required"
        assert config.response_checksum_validation == "when_required"
        sent = SentHeaders(storage.client)
        with storage.open("small.txt", "w") as f:
            f.write(b"hello")
        storage.upload(io.BytesIO(data), "big.bin")
        out = io.BytesIO()
        storage.download("big.bin", out)
        with storage.open("small.txt") as f:
            assert f.read() == b"hello"
    assert out.getvalue() == data
    methods = [method for method, _ in sent.requests]
    assert methods.count("PUT") >= 4  # put_object, 3 parts (upload_part is a PUT)
    assert sent.checksum_headers() == []


def test_checksum_settings_can_be_chosen(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    """An explicit option or a client_config wins over the endpoint_url default; the test of
    the headers above would see what boto3 then sends."""
    with make_storage(
        seaweedfs, s3_bucket, client_config=Config(request_checksum_calculation="when_supported")
    ) as storage:
        assert storage.client.meta.config.request_checksum_calculation == "when_supported"
        assert storage.client.meta.config.response_checksum_validation == "when_required"
        sent = SentHeaders(storage.client)
        with storage.open("a.txt", "w") as f:
            f.write(b"checked")
        assert storage.client.get_object(Bucket=s3_bucket, Key="a.txt")["Body"].read() == b"checked"
    assert "x-amz-checksum-crc32" in sent.checksum_headers()
    with make_storage(
        seaweedfs, s3_bucket, response_checksum_validation="when_supported"
    ) as storage:
        assert storage.client.meta.config.request_checksum_calculation == "when_required"
        assert storage.client.meta.config.response_checksum_validation == "when_supported"


def test_checksum_settings_of_the_environment_apply(
    seaweedfs: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_supported")
    with make_storage(seaweedfs, s3_bucket) as storage:
        assert storage.client.meta.config.request_checksum_calculation == "when_supported"
        assert storage.client.meta.config.response_checksum_validation == "when_required"


def test_aws_keeps_the_checksums_of_boto3() -> None:
    with S3Storage("bucket", "eu-west-1", "AKIDEXAMPLE", "secret") as storage:
        assert storage.client.meta.config.request_checksum_calculation == "when_supported"
        assert storage.client.meta.config.response_checksum_validation == "when_supported"
