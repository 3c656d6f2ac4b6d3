"""``prefix=`` on S3Storage (SeaweedFS) and AzureStorage (Azurite): every key lives under it, in
the service's own view (raw boto3 / azure SDK), and nothing outside it is reachable."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from azure.storage.blob import ContainerClient

from keg_storage import (
    AzureStorage,
    FileExistsInStorageError,
    FileNotFoundInStorageError,
    InvalidPathError,
    S3Storage,
    StorageBackend,
    UnsupportedOperationError,
    from_url,
)
from keg_storage.testing import names, read, write
from tests.fixtures.backend_s3 import make_storage as make_s3
from tests.servers.azurite import Azurite
from tests.servers.seaweedfs import SeaweedFS


def s3_keys(client: Any, bucket: str) -> list[str]:
    return [
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
    ]


def azure_keys(container: ContainerClient) -> list[str]:
    return sorted(blob.name for blob in container.list_blobs())


@pytest.fixture(params=["s3", "azure"])
def prefixed(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[StorageBackend, StorageBackend, Any]]:
    """(a backend with prefix 'tenant/one', one on the whole bucket/container, the service's
    key lister)."""
    if request.param == "s3":
        server: SeaweedFS = request.getfixturevalue("seaweedfs")
        bucket = request.getfixturevalue("s3_bucket")
        client = request.getfixturevalue("s3_client")
        with (
            make_s3(server, bucket, prefix="/tenant//one/") as inner,
            make_s3(server, bucket) as whole,
        ):
            yield inner, whole, lambda: sorted(s3_keys(client, bucket))
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    container: ContainerClient = request.getfixturevalue("azure_container")
    options = {"account_url": azurite.account_url}
    name = container.container_name
    account = (azurite.account, azurite.key, name)
    with (
        AzureStorage(*account, prefix="tenant/one", **options) as inner,
        AzureStorage(*account, **options) as whole,
    ):
        yield inner, whole, lambda: azure_keys(container)


def test_writes_land_under_the_prefix_in_the_services_view(prefixed: Any) -> None:
    inner, whole, service_keys = prefixed
    assert inner.prefix == "tenant/one"
    write(whole, "outside.txt", b"other tenant")
    write(whole, "tenant/one-sibling/x.txt", b"sibling")
    write(inner, "/a.txt", b"A")
    inner.upload(__import__("io").BytesIO(b"B"), "dir/b.txt")
    assert service_keys() == [
        "outside.txt",
        "tenant/one-sibling/x.txt",
        "tenant/one/a.txt",
        "tenant/one/dir/b.txt",
    ]
    assert names(inner) == ["a.txt", "dir/b.txt"]
    assert [e.name for e in inner.list("", recursive=False)] == ["a.txt", "dir/"]
    assert names(inner, "dir") == ["dir/b.txt"]
    assert [e.name for e in inner.glob("**/*.txt")] == ["a.txt", "dir/b.txt"]
    assert inner.stat("dir/b.txt").size == 1
    assert not inner.exists("outside.txt")
    assert read(whole, "tenant/one/a.txt") == b"A"


def test_delete_many_deletes_under_the_prefix_only(prefixed: Any) -> None:
    inner, whole, service_keys = prefixed
    write(whole, "a.txt", b"outside")
    for path in ("a.txt", "dir/b.txt"):
        write(inner, path, b"inside")
    results = inner.delete_many(["a.txt", "dir/b.txt", "missing.txt"])
    assert [(result.path, result.ok) for result in results] == [
        ("a.txt", True),
        ("dir/b.txt", True),
        ("missing.txt", True),
    ]
    assert service_keys() == ["a.txt"]


def test_dot_dot_and_absolute_tricks_stay_inside(prefixed: Any) -> None:
    inner, whole, _ = prefixed
    write(whole, "secret.txt", b"keep")
    for escape in ("../secret.txt", "../../secret.txt", "a/../../secret.txt"):
        with pytest.raises(InvalidPathError):
            inner.open(escape, "wb")
        with pytest.raises(InvalidPathError):
            inner.copy("x", escape)
    write(inner, "//secret.txt", b"mine")
    assert read(whole, "secret.txt") == b"keep"
    assert read(whole, "tenant/one/secret.txt") == b"mine"
    with pytest.raises(InvalidPathError):
        type(inner)(**_same_options(inner, prefix="tenant/../other"))


def _same_options(backend: Any, **changes: Any) -> dict[str, Any]:
    if isinstance(backend, S3Storage):
        client = backend.client
        credentials = client._request_signer._credentials
        options = {
            "bucket": backend.bucket,
            "aws_region": backend.aws_region,
            "aws_access_key_id": credentials.access_key,
            "aws_secret_access_key": credentials.secret_key,
            "endpoint_url": backend.endpoint_url,
        }
    else:
        options = {
            "account": backend.account,
            "key": backend.key,
            "bucket": backend.bucket,
            "account_url": backend.account_url,
        }
    return {**options, **changes}


def test_copy_move_and_conditional_writes_are_relative(prefixed: Any) -> None:
    inner, whole, service_keys = prefixed
    write(inner, "a.txt", b"A")
    write(whole, "b.txt", b"outside, same name")
    inner.copy("a.txt", "b.txt", overwrite=False)  # b.txt exists outside only
    inner.move("b.txt", "c/d.txt")
    assert service_keys() == ["b.txt", "tenant/one/a.txt", "tenant/one/c/d.txt"]
    with pytest.raises(FileExistsInStorageError) as exists:
        inner.copy("c/d.txt", "a.txt", overwrite=False)
    assert exists.value.path == "a.txt"
    refused = pytest.raises(FileExistsInStorageError)
    with refused, inner.open("a.txt", "wb", overwrite=False) as file:
        file.write(b"no")
    etag = inner.stat("a.txt").etag
    with inner.open("a.txt", "wb", if_match=etag) as file:
        file.write(b"swapped")
    assert read(whole, "tenant/one/a.txt") == b"swapped"


def test_s3_multipart_copy_stays_under_the_prefix(
    seaweedfs: SeaweedFS, s3_bucket: str, s3_client: Any
) -> None:
    with make_s3(seaweedfs, s3_bucket, prefix="tenant/one") as inner:
        inner.copy_threshold = 1  # a multipart copy from the first byte
        write(inner, "big.bin", b"x" * 100)
        inner.copy("big.bin", "copy.bin")
        assert read(inner, "copy.bin") == b"x" * 100
    assert sorted(s3_keys(s3_client, s3_bucket)) == ["tenant/one/big.bin", "tenant/one/copy.bin"]


def test_errors_name_the_path_the_user_gave(prefixed: Any) -> None:
    inner, _, _ = prefixed
    for action in (
        lambda: inner.open("nope.txt", "rb"),
        lambda: inner.stat("nope.txt"),
        lambda: inner.copy("nope.txt", "x.txt"),
        lambda: inner.download("nope.txt", __import__("io").BytesIO()),
    ):
        with pytest.raises(FileNotFoundInStorageError) as missing:
            action()
        assert missing.value.path == "nope.txt"
        assert "tenant" not in str(missing.value)


def test_links_point_at_the_prefixed_key(prefixed: Any) -> None:
    inner, whole, _ = prefixed
    write(inner, "a.txt", b"linked")
    write(whole, "a.txt", b"outside")
    url = inner.link_to("a.txt", "download", timedelta(minutes=5))
    assert "/tenant/one/a.txt?" in url
    assert requests.get(url, timeout=10).content == b"linked"
    upload = inner.link_to("up.txt", "upload", timedelta(minutes=5))
    headers = {"Content-Type": "application/octet-stream", "x-ms-blob-type": "BlockBlob"}
    assert requests.put(upload, data=b"up", headers=headers, timeout=10).ok
    assert read(whole, "tenant/one/up.txt") == b"up"


def test_azure_prefix_needs_a_container(azurite: Azurite, azure_container: ContainerClient) -> None:
    with pytest.raises(ValueError, match=r"^a prefix needs a container: a blob SAS URL gives"):
        AzureStorage(sas_blob_url=f"{azurite.account_url}/c/b?sv=1&sig=x", prefix="app")
    with (
        AzureStorage(
            azurite.account,
            azurite.key,
            azure_container.container_name,
            account_url=azurite.account_url,
            prefix="app",
        ) as storage,
        pytest.raises(UnsupportedOperationError, match="outside the prefix"),
    ):
        storage.create_container_url(timedelta(minutes=5))


def test_from_url_sets_the_prefix(seaweedfs: SeaweedFS, s3_bucket: str, s3_client: Any) -> None:
    url = f"s3://{s3_bucket}/app/v1?region={seaweedfs.region}&endpoint_url={seaweedfs.endpoint_url}"
    secrets = {
        "aws_access_key_id": seaweedfs.access_key,
        "aws_secret_access_key": seaweedfs.secret_key,
    }
    with from_url(url, name="files", **secrets) as storage:
        assert isinstance(storage, S3Storage) and storage.prefix == "app/v1"
        write(storage, "a.txt", b"A")
        assert repr(storage) == f"S3Storage({url!r}, name='files')"
    assert s3_keys(s3_client, s3_bucket) == ["app/v1/a.txt"]
