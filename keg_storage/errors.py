"""The error hierarchy of keg_storage (CONTRACT §6).

Every error derives from :class:`StorageError` and also from the builtin exception that code
already catches (``FileNotFoundError``, ``ValueError``, ...), so ``except FileNotFoundError`` keeps
working. Every error names the backend and the path it is about; SDK exceptions are chained with
``raise ... from``. Messages never carry secrets.
"""

from __future__ import annotations

from typing import Any


def describe_backend(backend: Any) -> str:
    """``S3Storage 's3'`` for a backend, the string itself for anything else."""
    name = getattr(backend, "name", None)
    if name is None:
        return str(backend)
    return f"{type(backend).__name__} {name!r}"


class StorageError(Exception):
    """Root of every error keg_storage raises."""

    def __init__(self, message: str, *, backend: Any = None, path: str | None = None) -> None:
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


class StorageConnectionError(StorageError, ConnectionError):
    """The service could not be reached or refused the connection (auth, host key, network)."""


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
    "FileNotFoundInStorageError",
    "InvalidPathError",
    "LinkTokenError",
    "MalformedLinkTokenError",
    "MissingDependencyError",
    "StorageConnectionError",
    "StorageError",
    "StoragePermissionError",
    "UnsupportedOperationError",
]
