"""The error hierarchy of keg_storage (CONTRACT §6).

Every error derives from :class:`StorageError` and also from the builtin exception that code
already catches (``FileNotFoundError``, ``ValueError``, ...), so ``except FileNotFoundError`` keeps
working. Every error names the backend and the path it is about; SDK exceptions are chained with
``raise ... from``. Messages never carry secrets.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .secrets import redact

retry_log = logging.getLogger("keg_storage.retry")
"""Every retry a backend makes is logged here at WARNING, one line each (see docs/errors.rst)."""


def describe_backend(backend: Any) -> str:
    """``S3Storage 's3'`` for a backend (its ``backend_description`` when it has one, as a
    scoped view does), the string itself for anything else."""
    description = getattr(backend, "backend_description", None)
    if isinstance(description, str):
        return description
    name = getattr(backend, "name", None)
    if name is None:
        return str(backend)
    return f"{type(backend).__name__} {name!r}"


class StorageError(Exception):
    """Root of every error keg_storage raises."""

    def __init__(self, message: str, *, backend: Any = None, path: str | None = None) -> None:
        self.reason = message
        self.backend = describe_backend(backend) if backend is not None else None
        self.path = path
        details = []
        if self.backend is not None:
            details.append(f"backend {self.backend}")
        if path is not None:
            details.append(f"path {path!r}")
        self.message = f"{message} ({', '.join(details)})" if details else message
        super().__init__(self.message)

    def __str__(self) -> str:
        # OSError subclasses would otherwise format errno/filename instead of the message.
        return self.message


class FileNotFoundInStorageError(StorageError, FileNotFoundError):
    """The file does not exist in the backend.

    The positional signature ``(storage_type, filename)`` and the attributes of the same names are
    those of keg-storage 0.5.
    """

    def __init__(self, storage_type: Any, filename: str) -> None:
        self.storage_type = storage_type
        self.filename = filename
        super().__init__("File not found", backend=storage_type, path=filename)


class InvalidPathError(StorageError, ValueError):
    """The path breaks the rules of CONTRACT §2; nothing was read or written."""


class StoragePermissionError(StorageError, PermissionError):
    """The service refused access to the path."""


class UnsupportedOperationError(StorageError, NotImplementedError):
    """The backend cannot do this (a mode, an option, a kind of link)."""


class FileExistsInStorageError(StorageError, FileExistsError):
    """A create-only write (``overwrite=False``) found a file at the path; nothing was published
    and the file there is unchanged (CONTRACT §9)."""


class PreconditionFailedError(StorageError):
    """A compare-and-swap write (``if_match=etag``) found no file at the path, or one whose
    ETag is no longer ``etag``; nothing was published and the file there is unchanged
    (CONTRACT §9)."""


class StorageConnectionError(StorageError, ConnectionError):
    """The service could not be reached or refused the connection (auth, host key, network).

    Its message names the endpoint and the root cause in words (see :func:`connection_failed`),
    which ``cause`` holds alone (None for the errors that are no network failure).
    """

    cause: str | None = None


def connection_failed(
    service: str,
    endpoint: str,
    exc: BaseException,
    *,
    backend: Any,
    path: str | None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
) -> StorageConnectionError:
    """``connection to S3 at http://127.0.0.1:8333 failed: Connection refused (backend ...)``:
    the error for a network failure, with its root cause found in the exception chain."""
    cause = failure_cause(exc, connect_timeout=connect_timeout, read_timeout=read_timeout)
    error = StorageConnectionError(
        f"connection to {service} at {endpoint} failed: {cause}", backend=backend, path=path
    )
    error.cause = cause
    return error


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps, outermost first: ``__cause__``/``__context__``
    and the attributes the SDKs keep them in (botocore's ``kwargs['error']``, azure-core's
    ``inner_exception``, urllib3's ``reason``, exceptions among ``args``)."""
    pending: list[Any] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        kwargs = getattr(current, "kwargs", None)
        pending += [
            getattr(current, "inner_exception", None),
            getattr(current, "reason", None),
            kwargs.get("error") if isinstance(kwargs, dict) else None,
            *current.args,
            current.__cause__,
            current.__context__,
        ]


def _seconds(value: float | None) -> str:
    return "the timeout" if value is None else f"{value:g} s"


def failure_cause(
    exc: BaseException, *, connect_timeout: float | None = None, read_timeout: float | None = None
) -> str:
    """The root cause of a network failure in words: ``Connection refused``, ``Name or service
    not known``, ``no answer within 5 s``, ``the server closed the connection``..."""
    chain = list(_chain(exc))
    for error in reversed(chain):  # the innermost cause is the most precise
        if isinstance(error, socket.gaierror):
            return str(error.strerror or error)
        if isinstance(error, OSError) and not isinstance(error, TimeoutError) and error.strerror:
            return error.strerror
    names = {cls.__name__ for error in chain for cls in type(error).__mro__}
    if names & {"ConnectTimeoutError", "ConnectTimeout"}:
        return f"no connection within {_seconds(connect_timeout)}"
    if names & {"TimeoutError", "ReadTimeoutError", "ReadTimeout"}:
        return f"no answer within {_seconds(read_timeout)}"
    if names & {"RemoteDisconnected", "EOFError", "ConnectionClosedError"}:
        return "the server closed the connection"
    innermost = chain[-1]
    return redact(str(innermost)) or type(innermost).__name__  # a URL there may hold a SAS


def display_url(url: str) -> str:
    """``url`` without user info, query and fragment: safe to show (a SAS query is a secret)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def log_retry(
    backend: Any, action: str, cause: str, endpoint: str, attempt: int, attempts: int | None
) -> None:
    """Log one retry on ``keg_storage.retry``: ``s3 'archive': GET a.txt failed (Connection
    refused) at http://127.0.0.1:8333; retrying (attempt 2 of 3)``. ``backend`` is the label
    (``s3 'archive'``) or a backend, whose ``retry_label`` gives it."""
    label = getattr(backend, "retry_label", backend)
    of = f" of {attempts}" if attempts else ""
    retry_log.warning(
        "%s: %s failed (%s) at %s; retrying (attempt %d%s)",
        label,
        action,
        cause,
        endpoint,
        attempt,
        of,
    )


def log_resend(backend: Any, action: str, cause: str, endpoint: str) -> None:
    """Log on ``keg_storage.retry`` a request sent without the SDK's pipeline that got no
    answer and goes again through the SDK (with its own retries, logged as they come):
    ``azure 'files': GET a.txt failed (Connection reset by peer) at http://127.0.0.1:10000/acct;
    sending it again through the SDK``."""
    label = getattr(backend, "retry_label", backend)
    retry_log.warning(
        "%s: %s failed (%s) at %s; sending it again through the SDK",
        label,
        action,
        cause,
        endpoint,
    )


class MissingDependencyError(StorageError, ImportError):
    """An optional SDK is not installed; the message names the extra to install."""

    def __init__(self, backend_class: str, extra: str, module: str) -> None:
        self.extra = extra
        super().__init__(
            f'{backend_class} needs the {module!r} package: pip install "keg-storage[{extra}]"'
        )


class LinkTokenError(StorageError):
    """An internal link token is invalid: bad signature, wrong algorithm or backend, bad claims."""


class MalformedLinkTokenError(LinkTokenError):
    """The token is not a JWT at all (garbage, truncated, bad encoding)."""


class ExpiredLinkTokenError(LinkTokenError):
    """The internal link token has expired."""


__all__ = [
    "ExpiredLinkTokenError",
    "FileExistsInStorageError",
    "FileNotFoundInStorageError",
    "InvalidPathError",
    "LinkTokenError",
    "MalformedLinkTokenError",
    "MissingDependencyError",
    "PreconditionFailedError",
    "StorageConnectionError",
    "StorageError",
    "StoragePermissionError",
    "UnsupportedOperationError",
]
