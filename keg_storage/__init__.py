"""keg_storage: one API for storing files on S3, Azure Blob Storage, SFTP or a local directory.

Backends that need an optional SDK (``S3Storage``, ``AzureStorage``, ``SFTPStorage``) and the
Flask integration (``Storage``, ``LinkViewMixin``, ``StorageOperations``) are imported on first
use, so ``import keg_storage`` works whatever extras are installed.

The namespace holds public names only (``__all__``; ``dir()`` shows them, lazy ones included):
helpers are imported inside the functions that use them.
"""

from typing import Any as _Any

from . import backends
from .backends import (
    FileMode,
    FileNotFoundInStorageError,
    FileStat,
    InternalLinksStorageBackend,
    InternalLinkTokenData,
    ListEntry,
    LocalFSError,
    LocalFSStorage,
    MemoryStorage,
    ProgressCallback,
    RemoteFile,
    ShareLinkOperation,
    StorageBackend,
    base,
    filesystem,
    memory,
)
from .backends.base import RemoteTextFile
from .backends.bulk import DeleteResult, TransferResult
from .backends.conditions import Capabilities
from .errors import (
    ExpiredLinkTokenError,
    FileExistsInStorageError,
    InvalidPathError,
    LinkTokenError,
    MalformedLinkTokenError,
    MissingDependencyError,
    PreconditionFailedError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
    UnsupportedOperationError,
)

# Imported at once, not on first use: a lazily exported function named like its module would be
# replaced on the package by the module as soon as anything imported ``keg_storage.sync``. The
# module imports no SDK.
from .sync import sync
from .version import VERSION as __version__

_LAZY = {
    "S3Storage": "keg_storage.backends.s3",
    "AzureStorage": "keg_storage.backends.azure",
    "SFTPStorage": "keg_storage.backends.sftp",
    "s3": "keg_storage.backends.s3",
    "azure": "keg_storage.backends.azure",
    "sftp": "keg_storage.backends.sftp",
    "plugin": "keg_storage.plugin",
    "from_url": "keg_storage.urls",
    "storage_url": "keg_storage.urls",
    "cli": "keg_storage.cli",
    "Storage": "keg_storage.plugin",
    "LinkViewMixin": "keg_storage.plugin",
    "StorageOperations": "keg_storage.plugin",
}


def __getattr__(name: str) -> _Any:
    """Import optional parts on first use (see the module docstring)."""
    import importlib

    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(module_name)
    return module if module_name.endswith("." + name) else getattr(module, name)


__all__ = [
    "AzureStorage",
    "Capabilities",
    "DeleteResult",
    "ExpiredLinkTokenError",
    "FileExistsInStorageError",
    "FileMode",
    "FileNotFoundInStorageError",
    "FileStat",
    "InternalLinkTokenData",
    "InternalLinksStorageBackend",
    "InvalidPathError",
    "LinkTokenError",
    "ListEntry",
    "LocalFSError",
    "LocalFSStorage",
    "MalformedLinkTokenError",
    "MemoryStorage",
    "MissingDependencyError",
    "PreconditionFailedError",
    "ProgressCallback",
    "RemoteFile",
    "RemoteTextFile",
    "S3Storage",
    "SFTPStorage",
    "ShareLinkOperation",
    "StorageBackend",
    "StorageConnectionError",
    "StorageError",
    "StoragePermissionError",
    "TransferResult",
    "UnsupportedOperationError",
    "__version__",
    "backends",
    "base",
    "filesystem",
    "from_url",
    "memory",
    "storage_url",
    "sync",
]


def _flask_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("flask") is not None
    except (ImportError, ValueError):  # an import hook that refuses it, or a stubbed module
        return False


# ``from keg_storage import *`` gives the Flask integration only where Flask is installed.
if _flask_installed():
    __all__ += ["LinkViewMixin", "Storage", "StorageOperations"]


def __dir__() -> list[str]:
    """The public names (``__all__``, the optional ones imported on first use included) and the
    module's dunder attributes (``__name__``, ``__file__``, ...), as ``dir()`` of a module shows."""
    dunders = [name for name in globals() if name.startswith("__") and name.endswith("__")]
    return sorted({*__all__, *dunders})
