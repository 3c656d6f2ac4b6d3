"""How AzureStorage reads the Azure SDK's exceptions: the one translation of Azure's errors
into keg_storage's (:func:`translate_azure_error`, the backend's error hook), and how a
conditional write is put to the service and its refusal recognised
(:func:`condition_arguments`, :func:`deciding`). Kept apart from :mod:`.azure`, which holds the
backend and its files.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..errors import (
    FileExistsInStorageError,
    FileNotFoundInStorageError,
    PreconditionFailedError,
    StorageError,
    StoragePermissionError,
    connection_failed,
)
from ..secrets import scrub
from .base import FILE_EXISTS, PRECONDITION_FAILED
from .conditions import WriteCondition
from .conditions import deciding as deciding_with

# The backend raises MissingDependencyError when used without the SDK; nothing here runs then.
with contextlib.suppress(ImportError):
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )


def azure_error(backend: Any, exc: Exception, key: str | None) -> StorageError:
    """The keg_storage error for an Azure SDK error (the caller chains it with ``from``)."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        # Only the account URL and the cause: the SDK's message can hold a SAS signature.
        connect, read = split_timeouts(getattr(backend, "timeout", None))
        return connection_failed(
            "Azure Blob Storage",
            getattr(backend, "endpoint", None) or "its account URL",
            exc,
            backend=backend,
            path=key,
            connect_timeout=connect,
            read_timeout=read,
        )
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "error_code", None)
    code = getattr(code, "value", code)  # the SDK gives a StorageErrorCode enum or a str
    reason = f"{code or type(exc).__name__}" + (f", HTTP {status}" if status else "")
    if code == "ContainerNotFound":
        return StorageError(f"the container does not exist ({reason})", backend=backend, path=key)
    if isinstance(exc, ResourceNotFoundError) and key is not None:
        return FileNotFoundInStorageError(backend, key)
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        return StoragePermissionError(f"Azure refused access ({reason})", backend=backend, path=key)
    if isinstance(exc, ResourceModifiedError):
        return StorageError(
            f"the blob changed while it was being read ({reason})", backend=backend, path=key
        )
    return StorageError(f"Azure request failed ({reason})", backend=backend, path=key)


def translate_azure_error(backend: Any, error: Exception, key: str | None) -> StorageError | None:
    """The :class:`StorageError` for an Azure SDK error (:func:`azure_error`), None for any
    other exception; either is scrubbed first: the SDK's frames hold the account key or the SAS
    token (see :func:`~keg_storage.secrets.scrub`)."""
    scrub(error)
    return azure_error(backend, error, key) if isinstance(error, AzureError) else None


def condition_arguments(condition: WriteCondition) -> dict[str, Any]:
    """The SDK's keyword arguments with which the service decides ``condition`` as it publishes
    (commit of the block list, single-shot upload, copy): ``If-None-Match: *`` or
    ``If-Match: etag``."""
    if not condition.overwrite:
        return {"if_none_match": "*"}
    if condition.if_match is not None:
        return {"if_match": condition.if_match}
    return {}


def condition_failure(
    error: BaseException, condition: WriteCondition, backend: Any, key: str
) -> StorageError | None:
    """:class:`FileExistsInStorageError` or :class:`PreconditionFailedError` when ``error`` is
    the service refusing ``condition`` (409 BlobAlreadyExists or 412 ConditionNotMet; for
    ``if_match`` also a missing blob), else None."""
    status = getattr(error, "status_code", None)
    if not condition.overwrite and (isinstance(error, ResourceExistsError) or status == 412):
        return FileExistsInStorageError(FILE_EXISTS, backend=backend, path=key)
    if condition.if_match is not None and isinstance(
        error, (ResourceModifiedError, ResourceNotFoundError)
    ):
        return PreconditionFailedError(PRECONDITION_FAILED, backend=backend, path=key)
    return None


def deciding(
    condition: WriteCondition, backend: Any, key: str
) -> contextlib.AbstractContextManager[None]:
    """Around the request that publishes under ``condition``: the service's refusal becomes
    :func:`condition_failure`'s error (:func:`.conditions.deciding`)."""
    return deciding_with(condition, backend, key, condition_failure)


def split_timeouts(
    timeout: float | tuple[float, float] | None,
) -> tuple[float | None, float | None]:
    """``(connect, read)`` seconds of a ``timeout`` option."""
    return timeout if isinstance(timeout, tuple) else (timeout, timeout)
