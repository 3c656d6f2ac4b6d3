"""The Flask integration under its keg-storage 0.5 name: every name this module had before it was
split by job, imported from where it lives now.

- :mod:`keg_storage.extension`: the ``Storage`` extension;
- :mod:`keg_storage.app_state`: what it keeps per app (``app.extensions['keg_storage']``);
- :mod:`keg_storage.link_view`: ``LinkViewMixin`` and ``describe_storage_error``;
- :mod:`keg_storage.operations`: ``StorageOperations``.
"""

from __future__ import annotations

# ruff: noqa: F401 - this module re-exports: every import is a name users import from here
from .app_state import (
    DEFAULT_LOCATION_KEY,
    DEPRECATED_PROFILES_KEY,
    EXTENSION_KEY,
    PROFILES_KEY,
    BackendSpec,
    log,
)
from .backends.base import (
    FileMode,
    InternalLinksStorageBackend,
    InternalLinkTokenData,
    ShareLinkOperation,
    StorageBackend,
)
from .errors import (
    ExpiredLinkTokenError,
    FileNotFoundInStorageError,
    InvalidPathError,
    LinkTokenError,
    MalformedLinkTokenError,
    MissingDependencyError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
    UnsupportedOperationError,
)
from .extension import Storage
from .http import content_disposition
from .link_view import (
    DEFAULT_LINK_IDLE_TIMEOUT,
    DEFAULT_LINK_MAX_TRANSFERS,
    LINK_IDLE_TIMEOUT_KEY,
    LINK_MAX_TRANSFERS_KEY,
    FileWrapper,
    LinkViewMixin,
    RequestEntityTooLarge,
    ResponseReturnValue,
    current_app,
    default_max_transfers,
    describe_storage_error,
    do_filesizeformat,
    flask,
    parse_options_header,
    request,
    runs_in_browser,
)
from .operations import Location, StorageOperations, secure_filename

__all__ = ["LinkViewMixin", "Storage", "StorageOperations", "describe_storage_error"]
