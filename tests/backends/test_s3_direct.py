"""Small uploads sent without the client's pipeline (keg_storage.backends.s3_direct), checked
against the SeaweedFS test server: they store what ``put_object`` stores, and whatever the
direct request cannot do goes through the client with its usual errors."""

from __future__ import annotations

import base64
import datetime
import http.server
import io
import random
import threading
import urllib.parse
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from keg_storage import FileNotFoundInStorageError, StorageError, StoragePermissionError
from keg_storage.backends import s3_direct
from keg_storage.backends.s3 import S3Storage
from keg_storage.backends.s3_direct import DIRECT_LIMIT
from tests.faults.proxy import FaultProxy
from tests.fixtures.backend_s3 import make_storage
from tests.servers.seaweedfs import SeaweedFS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
KEYS = [
    "a.txt",
    "dir/with space/ü-ñ 漢字.txt",
    "odd %2F+~!$&'()*,;=@[].txt",
    "ask?and#hash.bin",
    "-leading-dash/.hidden",
]
"""Keys whose quoting a hand-made request could get wrong."""

OPTIONS = {
    "ContentType": "text/csv; charset=utf-8",
    "ContentEncoding": "gzip",
    "ContentDisposition": 'attachment; filename="report.csv"',
    "ContentLanguage": "de-CH",
    "CacheControl": "max-age=60, private",
    "Metadata": {"owner": "ops", "mtime": "1700000000.250000"},
}
KEPT = ("ContentType", "ContentEncoding", "ContentDisposition", "ContentLanguage", "CacheControl")


class PutObjects:
    """The ``PutObject`` calls a client makes (its ``before-call`` event: its pipeline)."""

    operation = "PutObject"

    def __init__(self, client: S3Client) -> None:
        self.keys: list[str] = []
        client.meta.events.register(f"before-call.s3.{self.operation}", self._record)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.keys.append(params["url_path"].rsplit("/", 1)[-1])


class GetObjects(PutObjects):
    """The ``GetObject`` calls a client makes."""

    operation = "GetObject"


class HeadObjects(PutObjects):
    """The ``HeadObject`` calls a client makes."""

    operation = "HeadObject"


@pytest.fixture
def storages(seaweedfs: SeaweedFS, s3_bucket: str) -> Iterator[tuple[S3Storage, S3Storage]]:
    """The same bucket through a storage that uploads directly and one that does not."""
    with (
        make_storage(seaweedfs, s3_bucket) as direct,
        make_storage(seaweedfs, s3_bucket, direct_requests=False) as through_client,
    ):
        yield direct, through_client


def described(client: S3Client, bucket: str, key: str) -> dict[str, Any]:
    head = client.head_object(Bucket=bucket, Key=key)
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return {name: head.get(name) for name in (*KEPT, "Metadata", "ETag")} | {"body": body}


@pytest.mark.parametrize("key", KEYS)
def test_a_direct_upload_stores_what_put_object_stores(
    storages: tuple[S3Storage, S3Storage], s3_client: S3Client, key: str
) -> None:
    direct, through_client = storages
    calls = PutObjects(direct.client)
    body = b"id,total\n1,2\n" * 300
    direct.upload(io.BytesIO(body), f"direct/{key}", extra_args=OPTIONS)
    through_client.upload(io.BytesIO(body), f"client/{key}", extra_args=OPTIONS)
    assert calls.keys == []  # the direct storage's client pipeline never ran
    stored = described(s3_client, direct.bucket, f"direct/{key}")
    assert stored == described(s3_client, direct.bucket, f"client/{key}")
    assert stored["body"] == body
    assert stored["ContentType"] == "text/csv; charset=utf-8"
    assert stored["Metadata"] == {"owner": "ops", "mtime": "1700000000.250000"}
    assert direct.list("direct", recursive=True)[0].name == f"direct/{key}"
    gets = GetObjects(direct.client)
    target = io.BytesIO()
    direct.download(f"direct/{key}", target)
    assert target.getvalue() == body
    assert gets.keys == []


def test_under_a_prefix_the_direct_upload_lands_under_it(
    seaweedfs: SeaweedFS, s3_bucket: str, s3_client: S3Client
) -> None:
    with make_storage(seaweedfs, s3_bucket, prefix="app/v1") as storage:
        storage.upload(io.BytesIO(b"inside"), "a b.txt")
        assert [e.name for e in storage.list()] == ["a b.txt"]
    body = s3_client.get_object(Bucket=s3_bucket, Key="app/v1/a b.txt")["Body"].read()
    assert body == b"inside"


def test_what_the_direct_request_cannot_send_goes_through_the_client(
    storages: tuple[S3Storage, S3Storage], s3_client: S3Client
) -> None:
    """A body of 1 MiB or more and an option that is not a plain header go through the client;
    metadata that S3 cannot keep is refused by botocore's check, as before; an empty body and
    one just under the limit go directly."""
    direct, _ = storages
    calls = PutObjects(direct.client)
    direct.upload(io.BytesIO(b"x" * DIRECT_LIMIT), "limit.bin")
    direct.upload(io.BytesIO(b"y" * (DIRECT_LIMIT - 1)), "under.bin")
    direct.upload(io.BytesIO(b"tagged"), "tagged.txt", extra_args={"Tagging": "team=ops"})
    with pytest.raises(StorageError, match="ASCII") as refused:
        direct.upload(io.BytesIO(b"umlaut"), "meta.txt", extra_args={"Metadata": {"who": "Zoë"}})
    assert "meta.txt" in str(refused.value)
    direct.upload(io.BytesIO(b""), "empty.txt")
    assert calls.keys == ["limit.bin", "tagged.txt"]  # botocore refused meta.txt before
    sizes = {e.name: e.size for e in direct.list()}
    assert sizes == {
        "limit.bin": DIRECT_LIMIT,
        "under.bin": DIRECT_LIMIT - 1,
        "tagged.txt": 6,
        "empty.txt": 0,
    }
    tags = s3_client.get_object_tagging(Bucket=direct.bucket, Key="tagged.txt")["TagSet"]
    assert tags == [{"Key": "team", "Value": "ops"}]


@pytest.fixture
def small_chunks(seaweedfs: SeaweedFS, s3_bucket: str) -> Iterator[S3Storage]:
    with make_storage(seaweedfs, s3_bucket, chunk_size=5 * MiB) as storage:
        yield storage


def test_a_download_larger_than_a_chunk_takes_its_other_ranges_through_the_client(
    small_chunks: S3Storage, tmp_path: Any
) -> None:
    data = random.Random(3).randbytes(11 * MiB)
    small_chunks.upload(io.BytesIO(data), "large.bin")
    gets = GetObjects(small_chunks.client)
    small_chunks.get("large.bin", tmp_path / "large.bin")
    assert (tmp_path / "large.bin").read_bytes() == data
    assert gets.keys == ["large.bin", "large.bin"]  # the first range went directly


def test_downloads_of_an_empty_and_of_a_missing_object(
    small_chunks: S3Storage, tmp_path: Any
) -> None:
    """S3 refuses a range of an empty object (416): a HEAD then describes it. A missing key:
    the direct GET's 404 is asked again through the client, whose error is the usual one."""
    small_chunks.upload(io.BytesIO(b""), "empty.bin")
    target = io.BytesIO(b"")
    small_chunks.download("empty.bin", target)
    assert target.getvalue() == b""
    gets = GetObjects(small_chunks.client)
    with pytest.raises(FileNotFoundInStorageError) as missing:
        small_chunks.get("missing.bin", tmp_path / "missing.bin")
    assert missing.value.path == "missing.bin"
    assert gets.keys == ["missing.bin"]
    assert list(tmp_path.iterdir()) == []


def test_an_object_replaced_after_the_direct_first_range_fails_cleanly(
    small_chunks: S3Storage, s3_client: S3Client, tmp_path: Any
) -> None:
    """The other ranges are asked ``If-Match`` the ETag the direct GET saw: replaced between
    them, ``get`` raises and leaves the local file as it was."""
    small_chunks.upload(io.BytesIO(random.Random(1).randbytes(11 * MiB)), "moving.bin")
    replaced: list[bool] = []

    def replace_once(**_: Any) -> None:
        if not replaced:
            replaced.append(True)
            new = random.Random(2).randbytes(11 * MiB)
            s3_client.put_object(Bucket=small_chunks.bucket, Key="moving.bin", Body=new)

    small_chunks.client.meta.events.register("before-call.s3.GetObject", replace_once)
    local = tmp_path / "moving.bin"
    local.write_bytes(b"before")
    with pytest.raises(StorageError, match="PreconditionFailed"):
        small_chunks.get("moving.bin", local)
    assert local.read_bytes() == b"before"
    assert list(tmp_path.iterdir()) == [local]


def test_a_refused_direct_request_raises_the_clients_typed_error(
    seaweedfs: SeaweedFS, s3_bucket: str, s3_client: S3Client
) -> None:
    """Wrong keys: SeaweedFS answers 403 to the direct request; the upload is then sent through
    ``put_object`` (and ``exists`` asks ``head_object``), whose refusal is the usual typed error
    naming the path and the backend, without the secret."""
    with make_storage(seaweedfs, s3_bucket, "not-the-secret", max_attempts=1) as storage:
        calls = PutObjects(storage.client)
        with pytest.raises(StoragePermissionError) as raised:
            storage.upload(io.BytesIO(b"nope"), "refused.txt")
        with pytest.raises(StoragePermissionError):
            storage.exists("refused.txt")
    assert calls.keys == ["refused.txt"]
    assert "refused.txt" in str(raised.value) and "s3" in str(raised.value)
    assert "not-the-secret" not in str(raised.value) + repr(raised.value)
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0


def test_the_direct_request_carries_the_crc32_that_when_supported_asks_for(
    seaweedfs: SeaweedFS, s3_bucket: str, s3_client: S3Client
) -> None:
    """With ``request_checksum_calculation='when_supported'`` botocore sends a CRC32 of every
    ``put_object`` body; the direct request sends the same, which the server keeps."""
    body = b"checked body" * 100
    with make_storage(
        seaweedfs, s3_bucket, client_config=Config(request_checksum_calculation="when_supported")
    ) as storage:
        calls = PutObjects(storage.client)
        storage.upload(io.BytesIO(body), "crc.txt")
    assert calls.keys == []
    head = s3_client.head_object(Bucket=s3_bucket, Key="crc.txt", ChecksumMode="ENABLED")
    expected = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert head.get("ChecksumCRC32") == expected


def test_a_direct_upload_is_one_request(s3_proxied: tuple[S3Storage, FaultProxy]) -> None:
    """One request each; the PUTs and HEADs on a kept connection of their own
    (keg_storage.backends.keep_alive), the GET on the client's pool."""
    storage, proxy = s3_proxied
    storage.upload(io.BytesIO(b"z" * 4000), "one.bin")
    assert proxy.stats.connections == 1
    assert 4000 < proxy.stats.upstream_bytes < 4000 + 1500  # one request's headers, one body
    sent = proxy.stats.upstream_bytes
    target = io.BytesIO()
    storage.download("one.bin", target)
    assert target.getvalue() == b"z" * 4000
    assert proxy.stats.connections == 2
    assert proxy.stats.upstream_bytes - sent < 700  # one GET's headers
    heads = HeadObjects(storage.client)
    sent = proxy.stats.upstream_bytes
    assert storage.exists("one.bin") is True
    assert storage.exists("two.bin") is False
    assert proxy.stats.upstream_bytes - sent < 2 * 700  # two HEADs
    assert heads.keys == []
    assert proxy.stats.connections == 2


@pytest.mark.parametrize("cut", [100, 1200])
def test_a_direct_upload_cut_midway_is_sent_again_through_the_client(
    s3_proxied: tuple[S3Storage, FaultProxy], s3_client: S3Client, cut: int
) -> None:
    """The connection breaks in the direct request's headers or body: the client sends the
    upload again, and the object is stored whole."""
    storage, proxy = s3_proxied
    s3_client.put_object(Bucket=storage.bucket, Key="doc.bin", Body=b"old")
    calls = PutObjects(storage.client)
    body = bytes(range(256)) * 8
    proxy.cut_after(cut, "upstream")
    storage.upload(io.BytesIO(body), "doc.bin")
    assert not proxy.armed
    assert calls.keys == ["doc.bin"]
    assert s3_client.get_object(Bucket=storage.bucket, Key="doc.bin")["Body"].read() == body


@pytest.mark.parametrize("cut", [100, 3000])
def test_a_direct_download_cut_midway_is_asked_again_through_the_client(
    s3_proxied: tuple[S3Storage, FaultProxy], cut: int
) -> None:
    """Cut in the direct answer's headers (sent again by the client) or in its body (the range
    read again, as for any broken body): the download is whole."""
    storage, proxy = s3_proxied
    body = bytes(range(256)) * 32
    storage.upload(io.BytesIO(body), "doc.bin")
    proxy.cut_after(cut, "downstream")
    target = io.BytesIO()
    storage.download("doc.bin", target)
    assert not proxy.armed
    assert target.getvalue() == body


class Refusing(http.server.BaseHTTPRequestHandler):
    """Answers every request ``400 Bad Request`` with an S3 error body, and counts them."""

    seen: list[str] = []

    def _refuse(self) -> None:
        type(self).seen.append(self.command)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<Error><Code>AuthorizationHeaderMalformed</Code><Message>region</Message></Error>"
        self.send_response(400)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_GET = do_HEAD = _refuse

    def log_message(self, *args: Any) -> None:
        pass


def test_a_400_or_a_redirect_gives_the_direct_route_up() -> None:
    """What a bucket in another region than the client's gets: the client, which follows
    redirects and learns regions, takes every later request (a stand-in HTTP server, since
    SeaweedFS has one region)."""
    Refusing.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        storage = S3Storage(
            "bucket",
            "us-east-1",
            "key-id",
            "secret",
            endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
            max_attempts=1,
        )
        for attempt in range(2):
            with pytest.raises(StorageError, match="AuthorizationHeaderMalformed"):
                storage.upload(io.BytesIO(b"small"), f"a{attempt}.txt")
    finally:
        server.shutdown()
        server.server_close()
    assert Refusing.seen == ["PUT", "PUT", "PUT"]  # direct then client, then the client alone


def test_a_storage_without_credentials_is_made_and_fails_through_the_client(
    seaweedfs: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The route is learnt on first use: making the storage needs no credentials; the upload
    then fails with the client's own error."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage = S3Storage(s3_bucket, seaweedfs.region, endpoint_url=seaweedfs.endpoint_url)
    with storage, pytest.raises(StorageError, match="credentials") as raised:
        storage.upload(io.BytesIO(b"x"), "anonymous.txt")
    assert raised.value.path == "anonymous.txt"


SIGNED_CASES = [
    ("PUT", "http://127.0.0.1:8333/bucket/", None, {"Content-Length": "5"}, b"hello"),
    (
        "GET",
        "https://bucket.s3.eu-west-1.amazonaws.com/",
        "token/with+slash=",
        {"Range": "bytes=0-9"},
        b"",
    ),
    ("HEAD", "http://[::1]:9000/b/", None, {}, b""),
    (
        "PUT",
        "https://s3.example.com:443/b/",
        "t",
        {
            "Content-Length": "3",
            "Content-Type": "text/csv;  charset=utf-8",
            "Cache-Control": " max-age=60,   private ",
            "x-amz-meta-owner": "ops",
            "x-amz-checksum-crc32": "NhCmhg==",
        },
        b"a,b",
    ),
]


@pytest.mark.parametrize(("method", "bucket_url", "token", "headers", "body"), SIGNED_CASES)
@pytest.mark.parametrize("key", KEYS)
def test_the_signature_is_botocores(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    bucket_url: str,
    token: str | None,
    headers: dict[str, str],
    body: bytes,
    key: str,
) -> None:
    """The direct requests' own signer writes what botocore's ``S3SigV4Auth`` writes for the
    same request at the same second: the same headers and the same signature."""
    moment = datetime.datetime(2026, 12, 5, 7, 30, 15, tzinfo=datetime.timezone.utc)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment.replace(tzinfo=None))
    monkeypatch.setattr(s3_direct.time, "gmtime", lambda: moment.timetuple())
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    url = urllib.parse.urlsplit(bucket_url)
    route = s3_direct.Route(bucket_url, "eu-west-1", credentials, s3_direct._host_of(url), url.path)
    path = urllib.parse.quote(key, safe="/~")
    ours = s3_direct.Signer().sign(method, route, url.path + path, dict(headers), body)

    theirs = AWSRequest(method, bucket_url + path, dict(headers), body or None)
    S3SigV4Auth(credentials, "s3", "eu-west-1").add_auth(theirs)
    assert {k.lower(): v for k, v in ours.items() if k != "Host"} == {
        k.lower(): v for k, v in theirs.headers.items()
    }
    assert ours["Host"] == botocore.auth._host_from_url(bucket_url)
