"""The storage backends. ``s3``, ``azure`` and ``sftp`` import their SDK only when used."""

from __future__ import annotations

import importlib
from typing import Any

from .base import (
    FileMode,
    FileNotFoundInStorageError,
    FileStat,
    InternalLinksStorageBackend,
    InternalLinkTokenData,
    ListEntry,
    ProgressCallback,
    RemoteFile,
    ShareLinkOperation,
    StorageBackend,
)
from .filesystem import LocalFSError, LocalFSStorage
from .memory import MemoryStorage

_LAZY = {
    "S3Storage": "s3",
    "AzureStorage": "azure",
    "SFTPStorage": "sftp",
}


def __getattr__(name: str) -> Any:
    """Import ``S3Storage``, ``AzureStorage`` and ``SFTPStorage`` (and their modules) on first
    use, so that a missing optional SDK never breaks ``import keg_storage``."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if name in _LAZY.values():
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AzureStorage",
    "FileMode",
    "FileNotFoundInStorageError",
    "FileStat",
    "InternalLinkTokenData",
    "InternalLinksStorageBackend",
    "ListEntry",
    "LocalFSError",
    "LocalFSStorage",
    "MemoryStorage",
    "ProgressCallback",
    "RemoteFile",
    "S3Storage",
    "SFTPStorage",
    "ShareLinkOperation",
    "StorageBackend",
]
