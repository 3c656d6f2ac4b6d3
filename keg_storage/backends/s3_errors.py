"""How S3Storage reads botocore's exceptions: the one translation of S3's errors into
keg_storage's (:func:`translate_s3_error`, the backend's error hook), and how a conditional
write is put to the service and its refusal recognised (:func:`condition_parameters`,
:func:`deciding`). Kept apart from :mod:`.s3`, which holds the backend and its files.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..errors import (
    FileExistsInStorageError,
    FileNotFoundInStorageError,
    InvalidPathError,
    PreconditionFailedError,
    StorageError,
    StoragePermissionError,
    connection_failed,
)
from ..secrets import scrub
from .base import FILE_EXISTS, PRECONDITION_FAILED
from .conditions import WriteCondition
from .conditions import deciding as deciding_with

try:
    import boto3
    import botocore.exceptions
except ImportError:  # pragma: no cover - exercised by the package tests without the extra
    boto3 = None  # type: ignore[assignment]

NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
CONDITION_FAILED_CODES = frozenset({"PreconditionFailed", "412"})
PERMISSION_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "AccountProblem",
    }
)
# Failures while a response body streams in, after botocore's own retries are over.
BROKEN_BODY_ERRORS: tuple[type[Exception], ...] = (
    (
        botocore.exceptions.ResponseStreamingError,
        botocore.exceptions.IncompleteReadError,
        botocore.exceptions.ReadTimeoutError,
        botocore.exceptions.ConnectionClosedError,
    )
    if boto3 is not None
    else ()
)


def client_error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    if code:
        return str(code)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(status or "")


def map_error(exc: BaseException, backend: Any, key: str | None) -> BaseException:
    """The keg_storage error for a boto3/botocore exception (the caller chains it), or ``exc``
    itself when it is no SDK error."""
    if boto3 is None:
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        code = client_error_code(exc)
        if code in NOT_FOUND_CODES:
            return FileNotFoundInStorageError(backend, key or "")
        if code in PERMISSION_CODES:
            return StoragePermissionError(f"S3 refused access ({code})", backend=backend, path=key)
        if code == "KeyTooLongError":
            return InvalidPathError("the store refuses a key this long", backend=backend, path=key)
        if code == "NoSuchBucket":
            return StorageError("the bucket does not exist", backend=backend, path=key)
        return StorageError(f"S3 request failed ({code}): {exc}", backend=backend, path=key)
    if isinstance(
        exc,
        (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.ProxyConnectionError,
            *BROKEN_BODY_ERRORS,
        ),
    ):
        return connection_failed(
            "S3",
            getattr(backend, "endpoint", None) or "its endpoint",
            exc,
            backend=backend,
            path=key,
            connect_timeout=getattr(backend, "connect_timeout", None),
            read_timeout=getattr(backend, "read_timeout", None),
        )
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return StoragePermissionError("no AWS credentials found", backend=backend, path=key)
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return StorageError(f"S3 request failed: {exc}", backend=backend, path=key)
    return exc


def translate_s3_error(backend: Any, error: Exception, key: str | None) -> StorageError | None:
    """The :class:`StorageError` for an SDK exception (see :func:`map_error`), or None for any
    other; either way the exception is scrubbed first: botocore's and urllib3's frames hold the
    request, with its signature and session token."""
    mapped = map_error(scrub(error), backend, key)
    return mapped if isinstance(mapped, StorageError) else None


def condition_parameters(condition: WriteCondition) -> dict[str, Any]:
    """The request parameters with which S3 decides ``condition`` as it publishes (PutObject,
    CompleteMultipartUpload, CopyObject): ``IfNoneMatch='*'`` or ``IfMatch=etag``."""
    if not condition.overwrite:
        return {"IfNoneMatch": "*"}
    if condition.if_match is not None:
        return {"IfMatch": condition.if_match}
    return {}


def condition_failure(
    error: BaseException, condition: WriteCondition, backend: Any, key: str
) -> StorageError | None:
    """:class:`FileExistsInStorageError` or :class:`PreconditionFailedError` when ``error`` is
    the service refusing ``condition`` (412 PreconditionFailed; for ``if_match`` also a missing
    key, which AWS answers 404), else None."""
    if condition.unconditional or not isinstance(error, botocore.exceptions.ClientError):
        return None
    code = client_error_code(error)
    if not condition.overwrite and code in CONDITION_FAILED_CODES:
        return FileExistsInStorageError(FILE_EXISTS, backend=backend, path=key)
    if condition.if_match is not None and code in CONDITION_FAILED_CODES | NOT_FOUND_CODES:
        return PreconditionFailedError(PRECONDITION_FAILED, backend=backend, path=key)
    return None


def deciding(
    condition: WriteCondition, backend: Any, key: str
) -> contextlib.AbstractContextManager[None]:
    """Around the request that publishes under ``condition``: the service's refusal becomes
    :func:`condition_failure`'s error (:func:`.conditions.deciding`)."""
    return deciding_with(condition, backend, key, condition_failure)
