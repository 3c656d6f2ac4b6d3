"""delete_many when the service refuses some keys of a batch: each refused key gets its error,
the others are deleted.

S3's per-key ``Errors`` of DeleteObjects come from policies (AccessDenied) or the service's
trouble (InternalError), which SeaweedFS does not produce: botocore's own ``Stubber`` answers
as AWS documents it. Azure's are produced by Azurite itself: a SAS without the delete
permission.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from keg_storage import (
    AzureStorage,
    DeleteResult,
    StorageError,
    StoragePermissionError,
)
from keg_storage.backends.s3 import S3Storage
from tests.servers.azurite import Azurite


@pytest.fixture
def stubbed_s3() -> Iterator[tuple[S3Storage, Stubber]]:
    storage = S3Storage(
        "bucket", "us-east-1", "key-id", "secret", endpoint_url="http://127.0.0.1:9"
    )
    with Stubber(storage.client) as stubber:
        yield storage, stubber
        stubber.assert_no_pending_responses()


def test_s3_keys_refused_in_the_response_get_their_error(
    stubbed_s3: tuple[S3Storage, Stubber],
) -> None:
    storage, stubber = stubbed_s3
    errors = [
        {"Key": "denied.txt", "Code": "AccessDenied", "Message": "Access Denied"},
        {"Key": "gone.txt", "Code": "NoSuchKey", "Message": "The key does not exist"},
        {"Key": "busy.txt", "Code": "InternalError", "Message": "try again"},
    ]
    keys = ["ok.txt", "denied.txt", "gone.txt", "busy.txt"]
    expected = {
        "Bucket": "bucket",
        "Delete": {"Objects": [{"Key": key} for key in keys], "Quiet": True},
    }
    stubber.add_response("delete_objects", {"Errors": errors}, expected)
    results = storage.delete_many(keys)
    assert [result.ok for result in results] == [True, False, True, False]
    denied, busy = results[1].error, results[3].error
    assert isinstance(denied, StoragePermissionError)
    assert (
        str(denied)
        == "S3 refused access (AccessDenied) (backend S3Storage 's3', path 'denied.txt')"
    )
    assert isinstance(busy, StorageError) and not isinstance(busy, StoragePermissionError)
    assert busy.path == "busy.txt" and "InternalError" in str(busy)


def test_s3_a_failed_request_fails_its_keys_only(stubbed_s3: tuple[S3Storage, Stubber]) -> None:
    """2,001 keys: three requests of at most 1,000; the second fails as a whole."""
    storage, stubber = stubbed_s3
    keys = [f"k{number:04}" for number in range(2001)]
    stubber.add_response("delete_objects", {}, None)
    stubber.add_client_error("delete_objects", "SlowDown", "Please reduce your request rate")
    stubber.add_response("delete_objects", {}, None)
    storage.max_concurrency = 1  # the stubbed answers are taken in order
    results = storage.delete_many(keys)
    assert [result.ok for result in results] == [True] * 1000 + [False] * 1000 + [True]
    assert {type(result.error) for result in results[1000:2000]} == {StorageError}
    failed = results[1500].error
    assert isinstance(failed, StorageError) and failed.path == "k1500"
    assert str(failed).startswith("S3 request failed (SlowDown)")
    assert isinstance(failed.__cause__, ClientError)
    assert results[0] == DeleteResult("k0000")


def test_azure_blobs_the_sas_may_not_delete_are_refused_each(
    backend_azure: AzureStorage, azurite: Azurite, azure_container: ContainerClient
) -> None:
    for name in ("a.txt", "b.txt"):
        backend_azure.upload(io.BytesIO(name.encode()), name)
    sas = generate_container_sas(
        azurite.account,
        azure_container.container_name,
        account_key=azurite.key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    with AzureStorage(sas_container_url=f"{azure_container.url}?{sas}") as read_only:
        results = read_only.delete_many(["a.txt", "missing.txt", "b.txt"])
    for result in results:
        assert isinstance(result.error, StoragePermissionError), result
        assert str(result.error) == (
            "Azure refused access (AuthorizationPermissionMismatch, HTTP 403) "
            f"(backend AzureStorage 'azure', path '{result.path}')"
        )
        # Answered per blob, in the batch's sub-responses: a batch that failed as a whole
        # would give each key the SDK's error chained.
        assert result.error.__cause__ is None
    assert sorted(entry.name for entry in backend_azure.list()) == ["a.txt", "b.txt"]
