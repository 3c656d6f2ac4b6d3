"""Conditional writes on S3 (SeaweedFS) and Azure (Azurite): create-only (``overwrite=False``)
and compare-and-swap (``if_match``), decided by the service as it publishes; a refused write
leaves the old content and no multipart upload or committed change behind."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from azure.storage.blob import ContainerClient

from keg_storage import (
    FileExistsInStorageError,
    PreconditionFailedError,
    StorageBackend,
    UnsupportedOperationError,
)
from keg_storage.backends.azure import AzureStorage
from keg_storage.backends.conditions import Capabilities
from keg_storage.backends.s3 import CREATE_ONLY_HEADERS, S3Storage
from tests.fixtures.backend_s3 import make_storage
from tests.servers.azurite import Azurite
from tests.servers.seaweedfs import SeaweedFS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
SIZES = {"empty": 0, "small": 1000, "multipart": 12 * MiB + 17}
"""0 B and small files publish in one request; 12 MiB are parts (S3) or blocks (Azure)."""


def data_of(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(params=["s3", "azure"])
def storage(request: pytest.FixtureRequest) -> Iterator[StorageBackend]:
    """S3 with 5 MiB parts, or Azure with 5 MiB blocks, on a fresh bucket or container."""
    if request.param == "s3":
        seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
        bucket: str = request.getfixturevalue("s3_bucket")
        with make_storage(seaweedfs, bucket, chunk_size=5 * MiB, max_concurrency=3) as s3:
            yield s3
    else:
        yield request.getfixturevalue("backend_azure")


def leftovers(storage: StorageBackend, request: pytest.FixtureRequest) -> list[str]:
    """What a refused write could leave behind: S3's pending multipart uploads, Azure's
    uncommitted blocks are CONTRACT §3's known exception, so none are looked for there."""
    if isinstance(storage, S3Storage):
        client: S3Client = request.getfixturevalue("s3_client")
        uploads = client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])
        return [upload["Key"] for upload in uploads]
    return []


def message(storage: StorageBackend, reason: str, path: str) -> str:
    return f"{reason} (backend {type(storage).__name__} {storage.name!r}, path {path!r})"


EXISTS = "a file exists at this path"
STALE = "the file is not the version given by if_match"


def test_capabilities() -> None:
    common: dict[str, Any] = {
        "read_write": False,
        "conditional_create": True,
        "conditional_replace": True,
        "server_side_copy": True,
        "service_links": True,
        "internal_links": False,
        "metadata": True,
    }
    assert S3Storage.capabilities == Capabilities(multi_operation_links=False, **common)
    assert AzureStorage.capabilities == Capabilities(multi_operation_links=True, **common)


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_create_only_writes_where_nothing_is(storage: StorageBackend, size: int) -> None:
    data = data_of(size, 1)
    with storage.open("new.bin", "w", overwrite=False) as file:
        file.write(data)
    assert read(storage, "new.bin") == data


def read(storage: StorageBackend, path: str) -> bytes:
    sink = io.BytesIO()
    storage.download(path, sink)
    return sink.getvalue()


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_create_only_onto_a_file_keeps_it(
    storage: StorageBackend, size: int, request: pytest.FixtureRequest
) -> None:
    old = b"the old content"
    storage.upload(io.BytesIO(old), "taken.bin")
    etag = storage.stat("taken.bin").etag
    writer = storage.open("taken.bin", "w", overwrite=False)
    writer.write(data_of(size, 2))
    with pytest.raises(FileExistsInStorageError) as caught:
        writer.close()
    assert str(caught.value) == message(storage, EXISTS, "taken.bin")
    assert isinstance(caught.value, FileExistsError)
    assert read(storage, "taken.bin") == old
    assert storage.stat("taken.bin").etag == etag
    assert leftovers(storage, request) == []


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_create_only_upload_and_put(
    storage: StorageBackend, size: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """``upload`` of a local file (S3: not through boto3's transfer manager, which drops the
    condition; Azure: blocks streamed from the file) and ``put`` decide the same way."""
    data = data_of(size, 3)
    local = tmp_path / "local.bin"
    local.write_bytes(data)
    with local.open("rb") as source:
        storage.upload(source, "up.bin", overwrite=False)
    assert read(storage, "up.bin") == data
    with pytest.raises(FileExistsInStorageError), local.open("rb") as source:
        storage.upload(source, "up.bin", overwrite=False)
    with pytest.raises(FileExistsInStorageError) as caught:
        storage.put(str(local), "up.bin", overwrite=False)
    assert str(caught.value) == message(storage, EXISTS, "up.bin")
    storage.put(str(local), "put.bin", overwrite=False)
    assert read(storage, "put.bin") == data
    assert leftovers(storage, request) == []


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_if_match(storage: StorageBackend, size: int, request: pytest.FixtureRequest) -> None:
    """The ETag ``stat`` gives replaces the file; a stale one and a missing file raise."""
    storage.upload(io.BytesIO(b"version 1"), "cas.bin")
    first = storage.stat("cas.bin").etag
    assert first is not None and first.startswith('"') and first.endswith('"')
    second_data = data_of(size, 4)
    with storage.open("cas.bin", "w", if_match=first) as file:
        file.write(second_data)
    assert read(storage, "cas.bin") == second_data
    second = storage.stat("cas.bin").etag
    writer = storage.open("cas.bin", "w", if_match=first)
    writer.write(data_of(size, 5))
    with pytest.raises(PreconditionFailedError) as caught:
        writer.close()
    assert str(caught.value) == message(storage, STALE, "cas.bin")
    assert read(storage, "cas.bin") == second_data
    assert storage.stat("cas.bin").etag == second
    with pytest.raises(PreconditionFailedError) as missing:
        storage.upload(io.BytesIO(data_of(size, 6)), "missing.bin", if_match=first)
    assert str(missing.value) == message(storage, STALE, "missing.bin")
    assert not storage.exists("missing.bin")
    assert leftovers(storage, request) == []


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_losing_the_race_leaves_the_winner(
    storage: StorageBackend, size: int, request: pytest.FixtureRequest
) -> None:
    """Two create-only writers both open and write; the first to close wins, the second's
    ``close()`` raises and publishes nothing (S3: its multipart upload is aborted)."""
    winner, loser = data_of(size, 7), data_of(size, 8) + b"!"
    first = storage.open("race.bin", "w", overwrite=False)
    second = storage.open("race.bin", "w", overwrite=False)
    first.write(winner)
    second.write(loser)
    first.close()
    with pytest.raises(FileExistsInStorageError):
        second.close()
    assert read(storage, "race.bin") == winner
    assert leftovers(storage, request) == []


def test_two_compare_and_swap_writers_one_wins(
    storage: StorageBackend, request: pytest.FixtureRequest
) -> None:
    storage.upload(io.BytesIO(b"base"), "cas.bin")
    etag = storage.stat("cas.bin").etag
    assert etag is not None
    first = storage.open("cas.bin", "w", if_match=etag)
    second = storage.open("cas.bin", "w", if_match=etag)
    first.write(data_of(SIZES["multipart"], 9))
    second.write(data_of(SIZES["multipart"], 10))
    first.close()
    with pytest.raises(PreconditionFailedError):
        second.close()
    assert read(storage, "cas.bin") == data_of(SIZES["multipart"], 9)
    assert leftovers(storage, request) == []


@pytest.mark.parametrize("operation", ["copy", "move"])
def test_copy_and_move_create_only(
    storage: StorageBackend, operation: str, request: pytest.FixtureRequest
) -> None:
    storage.upload(io.BytesIO(b"source"), "source.bin")
    storage.upload(io.BytesIO(b"target"), "target.bin")
    act = getattr(storage, operation)
    with pytest.raises(FileExistsInStorageError) as caught:
        act("source.bin", "target.bin", overwrite=False)
    assert str(caught.value) == message(storage, EXISTS, "target.bin")
    assert read(storage, "target.bin") == b"target"
    assert read(storage, "source.bin") == b"source"
    act("source.bin", "fresh.bin", overwrite=False)
    assert read(storage, "fresh.bin") == b"source"
    assert storage.exists("source.bin") == (operation == "copy")
    assert leftovers(storage, request) == []


def test_s3_multipart_copy_create_only(
    seaweedfs: SeaweedFS, s3_bucket: str, s3_client: S3Client
) -> None:
    """Above ``copy_threshold`` the copy is UploadPartCopy parts whose complete carries
    ``IfNoneMatch``; a refused one is aborted."""
    with make_storage(seaweedfs, s3_bucket, chunk_size=5 * MiB) as storage:
        storage.copy_threshold = 5 * MiB
        data = data_of(SIZES["multipart"], 11)
        storage.upload(io.BytesIO(data), "big.bin")
        storage.upload(io.BytesIO(b"target"), "target.bin")
        with pytest.raises(FileExistsInStorageError):
            storage.copy("big.bin", "target.bin", overwrite=False)
        assert read(storage, "target.bin") == b"target"
        assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
        storage.move("big.bin", "moved.bin", overwrite=False)
        assert read(storage, "moved.bin") == data
        assert not storage.exists("big.bin")


def test_s3_copy_of_a_replaced_source_is_no_file_exists(backend_s3: S3Storage) -> None:
    """A 412 from CopySourceIfMatch (the source changed after the HEAD) is not reported as an
    existing target."""
    backend_s3.upload(io.BytesIO(b"source"), "source.bin")
    client = backend_s3.client
    original = client.head_object

    def head_then_replace(**arguments: Any) -> Any:
        head = original(**arguments)
        client.put_object(Bucket=backend_s3.bucket, Key="source.bin", Body=b"replaced")
        return head

    client.head_object = head_then_replace  # type: ignore[method-assign]
    try:
        with pytest.raises(Exception) as caught:
            backend_s3.copy("source.bin", "target.bin", overwrite=False)
    finally:
        del client.head_object
    assert not isinstance(caught.value, FileExistsInStorageError)
    assert "PreconditionFailed" in str(caught.value)
    assert not backend_s3.exists("target.bin")


def test_s3_create_only_upload_link(backend_s3: S3Storage) -> None:
    """The link signs ``If-None-Match: *``: the first PUT stores, a second is refused (412) and
    a PUT without the header does not match the signature (403)."""
    url = backend_s3.link_to("linked.bin", "upload", timedelta(minutes=5), overwrite=False)
    assert "if-none-match" in url
    headers = {"Content-Type": "application/octet-stream", **CREATE_ONLY_HEADERS}
    first = requests.put(url, data=b"first", headers=headers, timeout=10)
    assert first.status_code == 200, first.text
    second = requests.put(url, data=b"second", headers=headers, timeout=10)
    assert second.status_code == 412, second.text
    unsigned = requests.put(
        url, data=b"third", headers={"Content-Type": "application/octet-stream"}, timeout=10
    )
    assert unsigned.status_code == 403, unsigned.text
    assert read(backend_s3, "linked.bin") == b"first"


def test_s3_create_only_link_is_for_uploads(backend_s3: S3Storage) -> None:
    with pytest.raises(ValueError, match="overwrite=False applies to upload links only"):
        backend_s3.link_to("x.bin", "download", timedelta(minutes=5), overwrite=False)


def test_azure_links_cannot_be_create_only(
    backend_azure: AzureStorage, azurite: Azurite, azure_container: ContainerClient
) -> None:
    with pytest.raises(UnsupportedOperationError) as caught:
        backend_azure.link_to("x.bin", "upload", timedelta(minutes=5), overwrite=False)
    assert "Azure SAS links cannot be create-only (overwrite=False)" in str(caught.value)
    assert "path 'x.bin'" in str(caught.value)
    assert list(azure_container.list_blobs()) == []


@pytest.mark.parametrize("size", [1000, SIZES["multipart"]], ids=["small", "multipart"])
@pytest.mark.parametrize("way", ["overwrite", "if_match", "plain"])
def test_s3_publish_whose_answer_is_lost(
    s3_proxied: tuple[S3Storage, Any], size: int, way: str, request: pytest.FixtureRequest
) -> None:
    """The connection breaks after the service published but before its answer arrived:
    botocore sends the request again, which the service refuses (412; a resent complete may
    also find its upload gone). The stored object has this write's ETag, so the write went
    through and ``close()`` says so."""
    storage, proxy = s3_proxied
    storage.upload(io.BytesIO(b"old"), "lost.bin")
    condition = {
        "overwrite": {"overwrite": False, "path": "new.bin"},
        "if_match": {"if_match": storage.stat("lost.bin").etag, "path": "lost.bin"},
        "plain": {"path": "lost.bin"},
    }[way]
    path = condition.pop("path")
    publishing = "CompleteMultipartUpload" if size > storage.chunk_size else "PutObject"
    sent: list[str] = []

    def cut_the_answer(**_: Any) -> None:
        sent.append(publishing)
        if len(sent) == 1:  # past "100 Continue" (25 B) if the service sends one
            proxy.cut_after(30, "downstream")

    storage.client.meta.events.register(f"before-send.s3.{publishing}", cut_the_answer)
    data = data_of(size, 12)
    with storage.open(path, "w", **condition) as file:
        file.write(data)
    assert sent == [publishing, publishing]
    assert not proxy.armed
    assert read(storage, path) == data
    assert leftovers(storage, request) == []


def test_s3_rival_after_a_lost_answer_still_wins(
    s3_proxied: tuple[S3Storage, Any], s3_client: S3Client
) -> None:
    """A resend refused because another writer's bytes are there is still a refusal."""
    storage, proxy = s3_proxied
    sent: list[str] = []

    def rival_then_cut(**_: Any) -> None:
        sent.append("PutObject")
        if len(sent) == 1:
            s3_client.put_object(Bucket=storage.bucket, Key="raced.bin", Body=b"rival")
            proxy.cut_after(30, "downstream")

    storage.client.meta.events.register("before-send.s3.PutObject", rival_then_cut)
    file = storage.open("raced.bin", "w", overwrite=False)
    file.write(b"mine")
    with pytest.raises(FileExistsInStorageError):
        file.close()
    assert sent == ["PutObject", "PutObject"]
    assert read(storage, "raced.bin") == b"rival"


@pytest.mark.parametrize("way", ["overwrite", "if_match"])
def test_azure_commit_whose_answer_is_lost(
    azurite: Azurite, azure_container: ContainerClient, way: str
) -> None:
    """The connection breaks after the service committed the blocks but before its answer
    arrived: the SDK resends the commit, which the service refuses; the blob is made of this
    writer's blocks, so ``close()`` succeeds."""
    from azure.storage.blob import LinearRetry

    from tests.faults.proxy import FaultProxy

    azure_container.upload_blob("lost.bin", b"old")
    with (
        FaultProxy("127.0.0.1", azurite.port) as proxy,
        AzureStorage(
            azurite.account,
            azurite.key,
            azure_container.container_name,
            chunk_size=64 * 1024,
            account_url=f"http://127.0.0.1:{proxy.port}/{azurite.account}",
            retry=LinearRetry(backoff=0.1, random_jitter_range=0.05, retry_total=3),
        ) as storage,
    ):
        condition: dict[str, Any] = (
            {"overwrite": False, "path": "new.bin"}
            if way == "overwrite"
            else {"if_match": storage.stat("lost.bin").etag, "path": "lost.bin"}
        )
        path = condition.pop("path")
        data = data_of(200 * 1024, 13)
        file = storage.open(path, "w", **condition)
        file.write(data)
        commit = file.blob_client.commit_block_list  # type: ignore[attr-defined]
        commits: list[int] = []

        def cut_the_answer(*args: Any, **kwargs: Any) -> Any:
            commits.append(1)
            proxy.cut_after(30, "downstream")
            return commit(*args, **kwargs)

        file.blob_client.commit_block_list = cut_the_answer  # type: ignore[attr-defined]
        file.close()
        assert commits == [1]  # the resend is the SDK's, within the one call
        assert not proxy.armed
    assert azure_container.download_blob(path).readall() == data
